"""Command-line tools; each is also a console entry point of the installed package (``ckdsr-train``,
``ckdsr-test``, ...) and runs from a checkout as ``python tools/<name>.py``."""
