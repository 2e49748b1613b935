"""Series with their points and steps: what the pages draw and ``regressions`` gates on."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from .series import SeriesFilter, list_series, points
from .steps import PENALTY, Step, find_steps


@dataclass(frozen=True)
class SeriesView:
    """One series as the site shows it: its ``series`` row, its per-commit points and its steps."""

    info: dict
    points: pd.DataFrame
    steps: list[Step]

    @property
    def page(self) -> str:
        return f"series/{self.info['series_key'][:16]}.html"

    @property
    def name(self) -> str:
        return (f"{self.info['model']} · {self.info['threads']} thread(s) · {self.info['delegate']} · "
                f"{self.info['runtime']}")


def analyse(engine: sa.Engine, selected: SeriesFilter = SeriesFilter(),
            penalty: float = PENALTY) -> list[SeriesView]:
    """Every matching series that has at least one point, with its steps."""
    with engine.connect() as connection:
        infos = list_series(connection, selected).to_dict("records")
        by_id = points(connection, [int(info["series_id"]) for info in infos], selected.since)
    return [SeriesView(info, by_id[info["series_id"]], find_steps(by_id[info["series_id"]], penalty))
            for info in infos if info["series_id"] in by_id]
