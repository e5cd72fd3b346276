"""Command-line interface (``radvlsm``). Thin commands that call library functions; nothing imports this."""
