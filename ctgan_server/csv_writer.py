"""CSV text for restored synthetic rows, written fast without changing what `read_csv` gets back.

`DataFrame.to_csv` formats every cell in Python: on diamonds it took 0.62 s
per 200,000 rows, a fifth of a whole `sample`.  pyarrow's C++ writer did the
same rows in 0.12 s.  Its output differs from pandas' in three ways that
matter here, each handled below:

- a float 56.0 is written ``56`` (apache/arrow#40865).  `read_csv` decides a
  column's type from all its values, so a float column whose values were all
  whole would come back int64.  The header and the first row are therefore
  written by pandas, which writes ``56.0``: that one value keeps the column
  float64 however the later rows look.  (A gap, written empty, does the same.)
- booleans are written ``true``/``false``; they are given as ``True``/``False``
  text, the way pandas and most originals spell them.
- with quoting off, pyarrow refuses a value holding the delimiter, a quote or
  a line break instead of quoting it.  Such a block is written by pandas, which
  quotes just those values; pyarrow's own quoting would quote every string.

Without pyarrow every block is written by pandas: slower, the same values.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd


class CsvWriter:
    """Turns successive blocks of one table into CSV bytes: header and first row by pandas, the rest by pyarrow."""

    def __init__(self, delimiter: str = ",", for_pandas: Callable[[pd.DataFrame], pd.DataFrame] | None = None):
        """``for_pandas`` adjusts a block before pandas writes it (``transform.Restorer.for_csv``)."""
        self.delimiter = delimiter
        self.for_pandas = for_pandas or (lambda frame: frame)
        self.started = False

    def __call__(self, frame: pd.DataFrame) -> bytes:
        """CSV bytes for the next block of rows; the first call also writes the header."""
        head = b""
        if not self.started:
            self.started = True
            head = self.for_pandas(frame.iloc[:1]).to_csv(None, index=False, sep=self.delimiter).encode("utf-8")
            frame = frame.iloc[1:]
        if frame.empty:
            return head
        return head + self._rows(frame)

    def _rows(self, frame: pd.DataFrame) -> bytes:
        try:
            import pyarrow as pa
            import pyarrow.csv as pacsv
        except ImportError:
            return self._pandas(frame)
        columns = {}
        for name in frame.columns:
            values = frame[name]
            if values.dtype == bool:
                values = pd.Series(np.where(values.to_numpy(), "True", "False"), index=values.index)
            columns[name] = values
        try:
            table = pa.Table.from_pandas(pd.DataFrame(columns, index=frame.index), preserve_index=False)
            sink = pa.BufferOutputStream()
            options = pacsv.WriteOptions(include_header=False, delimiter=self.delimiter, quoting_style="none")
            pacsv.write_csv(table, sink, options)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            # A value needing quotes, or a column pyarrow cannot type (mixed objects).
            return self._pandas(frame)
        return sink.getvalue().to_pybytes()

    def _pandas(self, frame: pd.DataFrame) -> bytes:
        return self.for_pandas(frame).to_csv(None, index=False, header=False, sep=self.delimiter).encode("utf-8")
