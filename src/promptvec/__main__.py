"""``python -m promptvec`` (and ``accelerate launch -m promptvec ...``): the command-line tool."""

from promptvec.cli import app

if __name__ == "__main__":  # importing the module (e.g. to build the API docs) must not run the CLI
    app()
