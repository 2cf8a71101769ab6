"""The keys of the interactive view, as one table: the help screen (`?`), the
footer and the README's key table are all made from it."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Key:
    keys: str
    """As shown to the user."""
    does: str
    where: str = "table"
    """'table' (the main view), 'log' (the full-screen log) or 'both'."""
    footer: str = ""
    """Its short form in the one-line footer, or '' to leave it out there."""


KEYS: tuple[Key, ...] = (
    Key("↑ ↓  j k", "move the selection (the log: scroll)", "both", "↑↓ move"),
    Key("PgUp PgDn  Home End", "a page up or down, the first or the last (the log: End follows the end again)", "both"),
    Key("mouse", "a click selects an instance; the wheel scrolls the table, the output or the log", "both"),
    Key("Enter", "open the selected instance's output full-screen", "table", "⏎ log"),
    Key("Esc", "back from the log (q too), or clear the filter", "both"),
    Key("r", "restart the instance (asks first when it is running)", "both", "r restart"),
    Key("s", "stop the instance (asks first), or start it when it has ended", "both", "s stop"),
    Key("p", "pause or resume the instance (its whole process tree)", "both", "p pause"),
    Key("+ -", "one replica more or fewer of its process (fewer asks first)", "both", "+- scale"),
    Key("K", "send a signal to the instance (asks which; K, since k moves up)", "both", "K signal"),
    Key("/", "filter the table by name or state (the log: search)", "both", "/ filter"),
    Key("n N", "next or previous match of the search", "log"),
    Key("t", "timestamps on or off", "both", "t time"),
    Key("w", "wrap long lines, or scroll them sideways (← →)", "both"),
    Key("Tab", "move between the table and the merged output", "table"),
    Key("?", "this list of keys", "both", "? help"),
    Key("q  Ctrl-C", "run: stop everything, as Ctrl-C does (q asks first; a second Ctrl-C forces); top: leave, the supervisor runs on", "table", "q quit"),
)


def footer(where: str, quit_label: str = "quit") -> str:
    """The one-line footer of a screen."""
    shown = [key.footer for key in KEYS if key.footer and key.where in (where, "both")]
    if where == "table":
        shown = [label.replace("q quit", f"q {quit_label}") for label in shown]
    else:
        shown = [label for label in shown if label not in ("⏎ log", "t time", "+- scale")] + ["n/N next", "w wrap", "Esc back"]
        shown = [label.replace("/ filter", "/ search") for label in shown]
    return "  ".join(shown)
