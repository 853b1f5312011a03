"""The email templates: a plain-text and an HTML file per kind of email, shipped in
`templates/` and replaceable by the operator (`EXPORT_EMAIL_TEMPLATES_DIR`).

Files: `completion.txt`, `completion.html`, `failure.txt`, `failure.html`,
`expiring.txt`, `expiring.html`. The text file's first line is the subject
(`Subject: Your video is ready`), then an empty line, then the body. They are Jinja
templates (`{{ video_url }}`, `{% if poster_url %}...{% endif %}`) given the values of
`content.email_values`; every value is escaped in the HTML files (autoescape), none in
the text files. An operator directory may hold only some of the files: the others come
from the package. A name a template uses that is not a value is an error (StrictUndefined),
found by `check()` before any email is sent. The templates run in Jinja's sandbox and are
given plain values only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export_pipeline.io.mail.content import KINDS, SAMPLE_NOW, SAMPLE_ROW, email_values

PACKAGE_DIR = Path(__file__).parent / "templates"
SUBJECT = "subject:"
MAX_SUBJECT_CHARS = 200


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class Templates:
    """The templates of one directory (None: the package's), the package's filling in."""

    def __init__(self, directory: str | Path | None = None):
        search = [PACKAGE_DIR]
        if directory:
            path = Path(directory)
            if not path.is_dir():
                raise ValueError(f"the email templates directory {str(path)!r} does not exist")
            search.insert(0, path)
        self.directory = search[0]
        # jinja2 on first use: not every process that loads the definitions sends email
        # (a run worker's start, issue 24).
        from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
        from jinja2.sandbox import SandboxedEnvironment

        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(search),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, kind: str, values: Mapping[str, Any]) -> Rendered:
        """`kind`'s subject, text and HTML with `values` (the HTML also gets `subject`)."""
        text = self.env.get_template(f"{kind}.txt").render(values)
        first, _, body = text.partition("\n")
        if not first.lower().startswith(SUBJECT):
            raise ValueError(f"{kind}.txt must start with a 'Subject: ...' line")
        subject = " ".join(first[len(SUBJECT) :].split())[:MAX_SUBJECT_CHARS]
        if not subject:
            raise ValueError(f"{kind}.txt has an empty subject")
        html = self.env.get_template(f"{kind}.html").render({**values, "subject": subject})
        return Rendered(subject=subject, text=body.lstrip("\n"), html=html)

    def check(self) -> None:
        """Render every kind with a sample row (and a failed one): ValueError naming the
        file and what is wrong, so a broken template stops the start, not each email."""
        from jinja2 import TemplateError

        for kind in KINDS:
            row = {**SAMPLE_ROW, "status": "failed" if kind == "failure" else "complete"}
            try:
                self.render(kind, email_values(kind, row, SAMPLE_NOW))
            except (TemplateError, ValueError) as exc:
                name = getattr(exc, "name", None) or getattr(exc, "filename", None) or kind
                raise ValueError(
                    f"email template {name} in {self.directory}: {type(exc).__name__}: {exc}"
                ) from None
