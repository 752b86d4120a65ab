import sys

from .cli import main

# Run as `python -m ctgan_host`, the program still calls itself ctgan-host in
# usage lines and hints, as the installed console script does.
sys.exit(main(prog_name="ctgan-host"))
