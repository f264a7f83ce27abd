"""``python -m promptvec`` (and ``accelerate launch -m promptvec ...``): the command-line tool."""

from promptvec.cli import app

app()
