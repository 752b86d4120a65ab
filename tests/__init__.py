"""The test suite, a package so that it and bench/ import shared code as ``tests.helpers`` and ``tests.sshd``."""
