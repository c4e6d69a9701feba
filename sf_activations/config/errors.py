"""The one error the config layer raises: it names the file, the sync, the field and the fix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with the user's project, located as precisely as we can."""

    file: str
    message: str
    fix: str = ""
    sync: str | None = None
    field: str | None = None
    line: int | None = None  # 1-based line of the setting in ``file``, when known

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.sync:
            where += f", sync '{self.sync}'"
        if self.field:
            where += f", field '{self.field}'"
        text = f"{where}: {self.message}"
        if self.fix:
            text += f" Fix: {self.fix}"
        return text


class ConfigError(Exception):
    """The project configuration is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        lines = [str(p) for p in self.problems]
        head = (
            "invalid sf_activations project"
            if len(lines) != 1
            else "invalid sf_activations project:"
        )
        super().__init__(
            head + (" " + lines[0] if len(lines) == 1 else ":\n  - " + "\n  - ".join(lines))
        )
