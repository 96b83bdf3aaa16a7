"""Turn-taking: barge-in that tells a new turn from a backchannel or a cough,
false interruptions that resume, and turns that don't end mid-thought.

* :class:`BargeIn` configures how the caller's speech during a reply is
  judged (``Pipeline(barge_in=BargeIn(...))``); :class:`Backchannels` tells
  "uh-huh" from words that take the turn.
* :class:`TurnDetector` is the end-of-turn protocol; :class:`LocalTurnDetector`
  the built-in rules (``Pipeline(turn_detector=...)``).
* :class:`TurnTaking` joins them between the STT and the respond loop.

See ``docs/turn-taking.md`` for the knobs and what they cost.
"""

from voicepipe.turns.bargein import Action, Backchannels, BargeIn, BargeInJudge
from voicepipe.turns.detector import LocalTurnDetector, TurnDecision, TurnDetector
from voicepipe.turns.taking import Floor, TurnTaking

__all__ = [
    "Action",
    "Backchannels",
    "BargeIn",
    "BargeInJudge",
    "Floor",
    "LocalTurnDetector",
    "TurnDecision",
    "TurnDetector",
    "TurnTaking",
]
