"""``promptvec push``: a prompt to the Hugging Face Hub as a repository PEFT loads (or to a local
folder standing in for one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promptvec.cli.common import app, console, friendly, out_console


@app.command("push")
@friendly
def push_command(
    prompt: Annotated[str, typer.Argument(help="prompt folder, run folder (its best prompt) or Hub id")],
    repo_id: Annotated[str | None, typer.Argument(help="Hub repository namespace/name (created if missing)")] = None,
    to_folder: Annotated[Path | None, typer.Option("--to-folder", help="write the repository to this local folder "
                                                   "instead of the Hub")] = None,
    private: Annotated[bool, typer.Option("--private", help="create the repository private")] = False,
    revision: Annotated[str | None, typer.Option(help="branch to push to (created if missing; default main)")]
    = None,
    license: Annotated[str | None, typer.Option(help="the prompt's license, a Hub license id (e.g. apache-2.0); "
                                                "recorded in its card (left out when not given)")] = None,
    message: Annotated[str | None, typer.Option(help="commit message")] = None,
    overwrite: Annotated[bool, typer.Option(help="with --to-folder: replace a folder holding other files")]
    = False,
) -> None:
    """Push a prompt as a PEFT-loadable repository with its model card
    (PeftModel.from_pretrained(base, "namespace/name") loads it; so does --prompt namespace/name)."""
    from promptvec.publish import push_prompt

    pushed = push_prompt(prompt, repo_id, to_folder=to_folder, private=private, revision=revision, license=license,
                         commit_message=message, overwrite=overwrite)
    console.print(f"pushed {', '.join(pushed.files)}", highlight=False, markup=False)
    out_console.print(pushed.url or pushed.destination, highlight=False, markup=False)
