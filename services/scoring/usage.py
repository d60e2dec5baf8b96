"""An account's usage, kept as one compact value: the per-day counters of its kept window,
its users, and the event ids it saw lately. Pure: no database (``usage_store.py`` reads
and writes it), so applying events and reading measures cost no SQL statement.

Replaces a row per event (the dedup log), per active user and day, and per name and
day. What is kept, per account:

- ``users``: the account's user ids, each given a small index on first sight (an
  account-local user index: a day's active users are then a set of small integers);
  ``first_active``: each user's first active day (users ever active, activation).
- ``names``: the names counted ("e:login": a dimension's letter and the name), each
  given a small index on first sight like the users;
- the days of the window the service keeps (``HEALTHWATCH_WINDOW_DAYS``, 90 days by
  default), each with its events, seconds of use, the users active, and counts per name
  index (event, module, platform, and the order value per event name): in arrays
  (``columns``, ``day_columns.py``), but for the days events changed since the state was
  read, which are ``DayUse`` dicts (``unfolded``) until they fold into the arrays: when
  a newer day begins (``fold_older``, at a save), so the newest day, which events keep
  arriving for, stays a ``DayUse``, stored so too; no day is in both.
- ``seen``: the event ids (8-byte hashes) received in the last ``DEDUP_HOURS``, by the
  hour they were received (``id_window.py``, 12 to about 22 bytes an id in memory): a resent event
  within that window counts once. Not in the
  encoded value: stored apart, a row per account and hour (``usage_store``, table
  ``usage_seen``), so a save writes the hours that grew, not a busy account's whole
  window (100k ids for a thousand users sending 50 events a day, 9.5-14 ms to encode on
  every save when they were in the value). A value written before holds its window
  itself: read, its hours are marked to move to the table at its next save;
  ``events_seen``: how many distinct events of the account were ever applied (late
  ones included), for operators and for checking exactly-once.
- ``kept_from``: the days before it left for the long history (``usage_archive``, a
  value of this same kind per month, ``usage_store.archive``); ``whole_from``: every day
  from it on is here or in the long history (0: since the account's first event), so
  as-of reads know how far back they are answered.

Encoded with msgspec (MessagePack: the names, users and the columns' bytes) and
compressed with zstd; values of the formats before (the days as maps) are read too, and
written in this one at their next save.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import msgspec
import zstandard

from services.scoring import day_columns
from services.scoring.day_columns import EMPTY, DayColumns
from services.scoring.day_columns import DayUse as DayUse
from services.scoring.id_window import IdWindow

# A resent event counts once when it arrives within this many hours of the first copy.
# Client resends come within minutes to hours (retries, an app back online); Segment
# deduplicates over about 24 hours. 48 hours covers a weekend outage of a sender's
# retry queue. A busy account holds many ids (a thousand users at 50 events a day: 100k),
# which is why they are stored by the hour, apart from the state (``usage_seen``).
DEDUP_HOURS = 48
# The order values (the "value" dimension) are summed per day; a day's sum is held
# within ±2^31, as the counters always were (a sum beyond means nothing to a measure).
COUNT_MAX = 2**31 - 1
# Distinct names an account's state counts apart (events, modules, platforms and order
# values together, over the kept window). Products send tens to a few hundred event names;
# beyond this, names are counted together per dimension under OTHER_NAME, so a sender
# inventing names (a bug that puts ids into names, or a hostile key) cannot grow one
# account's state, and the cost of every batch that reads it, without bound.
MAX_NAMES = 2000
OTHER_NAME = "(other)"
# The dimensions a name is counted in, stored as one letter before the name.
DIMENSIONS = {"event": "e", "platform": "p", "module": "m", "value": "v"}
_DIMENSION_OF = {code: dimension for dimension, code in DIMENSIONS.items()}
# A module's counter among a day's names.
MODULE_KEY = DIMENSIONS["module"] + ":"
# The encoding's version, first byte of every stored value. Format 3 holds the days in
# columns; 2 held them as maps (``_Stored``); 1 (before the long history) also lacks
# kept_from and whole_from: read, it keeps its oldest day as kept_from and does not know
# what it dropped before (UNKNOWN) until it drops days again.
FORMAT = 3
UNKNOWN = -1
# zstd level 3: the library's default, ~5x smaller than MessagePack alone on typical
# accounts at a few microseconds per kilobyte; higher levels gain little on small values.
_COMPRESSOR = zstandard.ZstdCompressor(level=3)
_DECOMPRESSOR = zstandard.ZstdDecompressor()


class _Stored(msgspec.Struct, array_like=True, omit_defaults=True):
    """A value of format 1 or 2 (read, never written)."""

    users: list[str] = msgspec.field(default_factory=list)
    first_active: list[int] = msgspec.field(default_factory=list)  # day ordinals
    days: dict[int, DayUse] = msgspec.field(default_factory=dict)  # day ordinal → use
    # hour → id hashes: read from values written before the window moved to its own
    # table (``usage_seen``); written empty.
    seen: dict[int, set[int]] = msgspec.field(default_factory=dict)
    events_seen: int = 0
    names: list[str] = msgspec.field(default_factory=list)  # index → "e:login"
    kept_from: int = 0  # day ordinal
    whole_from: int = 0  # day ordinal, 0 or UNKNOWN


class _Columns(msgspec.Struct, array_like=True):
    """A value of format 3: the columns as their bytes (``day_columns.to_bytes``), and
    the newest day, when it is unfolded, as a map (see ``AccountUsage.fold_older``)."""

    users: list[str]
    first_active: list[int]  # day ordinals
    names: list[str]
    events_seen: int
    kept_from: int
    whole_from: int
    columns: tuple[bytes, ...]
    unfolded: dict[int, DayUse]


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Columns)
_DECODER_BEFORE = msgspec.msgpack.Decoder(_Stored)


@dataclass(eq=False)
class AccountUsage:
    """The usage state of one account, decoded; ``touched``: the days changed since it
    was loaded (their long-history rows are rewritten), ``changed``: anything was;
    ``seen_grown`` / ``seen_dropped``: the hours of the dedup window that gained ids /
    left it since it was saved (their rows are written / deleted, unless back in it)."""

    users: list[str] = field(default_factory=list)
    first_active: list[int] = field(default_factory=list)
    columns: DayColumns = EMPTY  # the days, but for those in unfolded
    unfolded: dict[int, DayUse] = field(default_factory=dict)  # the days events changed
    seen: IdWindow = field(default_factory=IdWindow)
    events_seen: int = 0
    names: list[str] = field(default_factory=list)
    kept_from: int = 0
    whole_from: int = 0
    touched: set[int] = field(default_factory=set)
    changed: bool = False
    seen_grown: set[int] = field(default_factory=set)
    seen_dropped: set[int] = field(default_factory=set)
    version: int = 0  # the stored row's version this state was read from (not encoded)
    # user id / name key → its index; built when first needed (a state read to be
    # measured never needs them)
    _index: dict[str, int] | None = None
    _name_index: dict[str, int] | None = None

    @property
    def index(self) -> dict[str, int]:
        """User id → its index."""
        if self._index is None:
            self._index = {user: index for index, user in enumerate(self.users)}
        return self._index

    @property
    def name_index(self) -> dict[str, int]:
        """Name key ("e:login") → its index."""
        if self._name_index is None:
            self._name_index = {key: index for index, key in enumerate(self.names)}
        return self._name_index

    # -- dedup -------------------------------------------------------------------

    def first_sight(self, event_id: str, received: datetime) -> bool:
        """True unless ``event_id`` was received within DEDUP_HOURS of ``received``
        (either way: an import's receipts are its event times, in any order); remembers
        it. The window's hours further away are not asked: an account quiet for days
        still holds the ids of its last active hours until its next batch drops them,
        and a resend after 48 hours counts again, as documented."""
        digest = id_hash(event_id)
        hour = _hour(received)
        if self.seen.holds(digest, hour, DEDUP_HOURS):
            return False
        self.seen.add(digest, hour)
        self.seen_grown.add(hour)
        self.events_seen += 1
        self.changed = True
        return True

    def forget_before(self, newest_received: datetime) -> None:
        """Drop the ids received more than DEDUP_HOURS before ``newest_received``."""
        oldest = _hour(newest_received) - DEDUP_HOURS
        for hour in self.seen.drop_before(oldest):
            self.seen_grown.discard(hour)
            self.seen_dropped.add(hour)
            self.changed = True

    def saved(self) -> None:
        """What changed is written (or, held in memory, needs no writing)."""
        self.touched.clear()
        self.seen_grown.clear()
        self.seen_dropped.clear()
        self.changed = False

    # -- usage -------------------------------------------------------------------

    def add(
        self, day: date, user_id: str, seconds: float, names: Iterable[tuple[str, str, int]]
    ) -> None:
        """Count one usage event on ``day``: its user, seconds and (dimension, name, uses)."""
        ordinal = day.toordinal()
        use = self.unfolded.get(ordinal)
        if use is None:
            use = self.unfolded[ordinal] = self._unfold(ordinal)
        use.events += 1
        use.seconds += seconds
        use.users.add(self._user(user_id, ordinal))
        for dimension, name, uses in names:
            key = self._name(f"{DIMENSIONS[dimension]}:{name}")
            use.names[key] = _clamped(use.names.get(key, 0) + uses)
        self.touched.add(ordinal)
        self.changed = True

    def _unfold(self, ordinal: int) -> DayUse:
        """Day ``ordinal`` taken out of the columns to be changed (a new one if none)."""
        at = day_columns.position(self.columns, ordinal)
        if at is None:
            return DayUse()
        use = day_columns.day_use(self.columns, at)
        self.columns = day_columns.without(self.columns, at)
        return use

    def fold(self) -> DayColumns:
        """Every day in the columns (the unfolded ones moved in); returns them."""
        if self.unfolded:
            self.columns = day_columns.merge(self.columns, self.unfolded)
            self.unfolded = {}
        return self.columns

    def fold_older(self) -> None:
        """Fold the unfolded days but the newest, which stays a ``DayUse`` (stored so
        too): the day events go on arriving for. When an unfolded day is older than one
        in the arrays (a late event), every unfolded day folds, the newest too. Folded at
        every save, the newest day would be taken out of the arrays again by the next
        batch's first event and folded back in, 52 µs an account and batch of array
        calls for a day still changing (``bench/step_bench.py``); so a day folds once,
        when a newer one begins."""
        if not self.unfolded_are_newest():
            self.fold()
        elif len(self.unfolded) > 1:
            newest = max(self.unfolded)
            use = self.unfolded.pop(newest)
            self.fold()
            self.unfolded[newest] = use

    def unfolded_are_newest(self) -> bool:
        """Whether every unfolded day is newer than every day in the columns."""
        days = self.columns.days
        return not self.unfolded or not days.size or min(self.unfolded) > int(days[-1])

    def _user(self, user_id: str, ordinal: int) -> int:
        # The attribute first: this runs for every event, and the property's call cost
        # a seventh of ``add`` (1.97 → 2.27 µs an event, timeit).
        users = self._index if self._index is not None else self.index
        index = users.get(user_id)
        if index is None:
            index = users[user_id] = len(self.users)
            self.users.append(user_id)
            self.first_active.append(ordinal)
        elif ordinal < self.first_active[index]:
            self.first_active[index] = ordinal
        return index

    def _name(self, key: str) -> int:
        names = self._name_index if self._name_index is not None else self.name_index
        index = names.get(key)
        if index is None:
            if len(self.names) >= MAX_NAMES:
                code, _, _ = key.partition(":")
                key = f"{code}:{OTHER_NAME}"
                index = names.get(key)
                if index is not None:
                    return index
            index = names[key] = len(self.names)
            self.names.append(key)
        return index

    def prune_before(self, day: date) -> AccountUsage | None:
        """Drop the days before ``day`` (out of the kept window); returns them, as a
        usage of their own for the long history, or None when there were none."""
        cutoff = day.toordinal()
        if self.oldest() >= cutoff:
            return None  # every batch asks; most states have nothing to drop
        dropped = [ordinal for ordinal in self.ordinals() if ordinal < cutoff]
        part = AccountUsage()
        part.absorb(self, dropped)
        self.columns = day_columns.from_day(self.fold(), cutoff)
        if self.whole_from == UNKNOWN:
            self.whole_from = dropped[0]  # what a format-1 value held: known whole from it
        self.kept_from = cutoff
        self.changed = True
        self._forget_unused_names()
        return part

    def keep_whole_from(self, day: date) -> None:
        """The long history no longer holds the days before ``day`` (its retention)."""
        ordinal = day.toordinal()
        if self.whole_from != UNKNOWN and ordinal > self.whole_from:
            self.whole_from = ordinal
            self.changed = True

    def absorb(self, source: AccountUsage, ordinals: Iterable[int] | None = None) -> None:
        """Count ``source``'s days (or those of ``ordinals``) here too, its users and
        names by their ids; a day both count is added up (in a new ``DayUse``: an
        unfolded one here may be shared with another state)."""
        wanted = source.ordinals() if ordinals is None else list(ordinals)
        if not wanted:
            return
        theirs_by_day = source.uses_between(min(wanted), max(wanted))
        for ordinal in wanted:
            theirs = theirs_by_day[ordinal]
            mine = self.unfolded.get(ordinal)
            use = self.unfolded[ordinal] = (
                self._unfold(ordinal)
                if mine is None
                else DayUse(mine.events, mine.seconds, set(mine.users), dict(mine.names))
            )
            use.events += theirs.events
            use.seconds += theirs.seconds
            use.users.update(self._user(source.users[user], ordinal) for user in theirs.users)
            for index, uses in theirs.names.items():
                key = self._name(source.names[index])
                use.names[key] = _clamped(use.names.get(key, 0) + uses)
            self.touched.add(ordinal)
            self.changed = True

    def with_history(self, months: Iterable[AccountUsage], first: date, last: date) -> AccountUsage:
        """A copy of this state with the days of ``months`` (from the long history) from
        ``first`` to ``last`` counted too, for reading measures as of an older day; this
        state is unchanged."""
        merged = AccountUsage(
            users=list(self.users),
            first_active=list(self.first_active),
            columns=self.columns,  # arrays are never changed in place: shared
            unfolded=dict(self.unfolded),
            names=list(self.names),
            kept_from=0,
            whole_from=self.whole_from,
        )
        span = range(first.toordinal(), last.toordinal() + 1)
        for month in months:
            merged.absorb(month, [ordinal for ordinal in month.ordinals() if ordinal in span])
        return merged

    def _forget_unused_names(self) -> None:
        """Drop the names no kept day counts, renumbering the rest: otherwise an
        account's names only grow (a name used once stays in its state for ever)."""
        renumbered = day_columns.renumber_names(self.fold(), len(self.names))
        if renumbered is None:
            return
        self.columns, kept = renumbered
        self.names = [self.names[old] for old in kept]
        self._name_index = None

    # -- reading -----------------------------------------------------------------

    def ordinals(self) -> list[int]:
        """The kept days' ordinals, oldest first."""
        return sorted([*self.columns.days.tolist(), *self.unfolded])

    def oldest(self) -> float:
        """The oldest kept day's ordinal (infinity without any)."""
        days = self.columns.days
        first = float(days[0]) if days.size else math.inf
        return min(first, min(self.unfolded, default=math.inf))

    @property
    def days(self) -> dict[int, DayUse]:
        """Every kept day (ordinal → use), oldest first; built for the reader, except
        the unfolded days, which are the state's own: read, do not change."""
        return self.uses_between(0, None)

    def uses_between(self, first: int, last: int | None) -> dict[int, DayUse]:
        """The days from ordinal ``first`` to ``last`` (None: the newest), oldest first;
        as ``days``, the unfolded ones are the state's own."""
        both = day_columns.day_uses(self.columns, first, last)
        both.update(
            (o, use)
            for o, use in self.unfolded.items()
            if first <= o and (last is None or o <= last)
        )
        return {ordinal: both[ordinal] for ordinal in sorted(both)}

    def day_totals(self, ordinal: int) -> tuple[int, float, int] | None:
        """Day ``ordinal``'s events, seconds and active users, or None without use."""
        use = self.unfolded.get(ordinal)
        if use is not None:
            return use.events, use.seconds, len(use.users)
        at = day_columns.position(self.columns, ordinal)
        if at is None:
            return None
        c = self.columns
        return int(c.events[at]), float(c.seconds[at]), int(c.user_counts[at])

    def span(self, end: date, days: int) -> list[DayUse]:
        """The days with use among the ``days`` days ending on ``end``, oldest first."""
        last = end.toordinal()
        first = last - days + 1
        return list(self.uses_between(first, last).values())

    def active_users(self, end: date, days: int) -> int:
        """Distinct users active over the ``days`` days ending on ``end``."""
        spanned = self.span(end, days)
        if len(spanned) == 1:
            return len(spanned[0].users)
        return len(set().union(*(use.users for use in spanned)))

    def users_ever(self, by: date) -> int:
        """Users whose first active day is on or before ``by``."""
        cutoff = by.toordinal()
        return sum(1 for first in self.first_active if first <= cutoff)

    def day_items(self) -> list[tuple[date, DayUse]]:
        """(day, use) for every kept day, oldest first."""
        return [(date.fromordinal(ordinal), use) for ordinal, use in self.days.items()]


def name_key(key: str) -> tuple[str, str]:
    """ "e:login" → ("event", "login")."""
    code, _, name = key.partition(":")
    return _DIMENSION_OF[code], name


def id_hash(event_id: str) -> int:
    """An event id as 8 bytes: at a few thousand ids per account, the chance that two
    of them collide is below 1e-12."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")


def _clamped(count: int) -> int:
    """``count`` held within ±COUNT_MAX. Comparisons, not ``max(-C, min(C, count))``:
    it runs for every name of every usage event, and the two builtin calls cost more
    than twice as much (0.32 against 0.13 µs a count updated, timeit on the 2-core
    machine)."""
    if -COUNT_MAX <= count <= COUNT_MAX:
        return count
    return COUNT_MAX if count > 0 else -COUNT_MAX


def _hour(moment: datetime) -> int:
    return int(moment.timestamp()) // 3600


def encode(usage: AccountUsage) -> bytes:
    """The state as stored (its days but the newest folded into the columns first)."""
    usage.fold_older()
    stored = _Columns(
        users=usage.users,
        first_active=usage.first_active,
        names=usage.names,
        events_seen=usage.events_seen,
        kept_from=usage.kept_from,
        whole_from=usage.whole_from,
        columns=day_columns.to_bytes(usage.columns),
        unfolded=usage.unfolded,
    )
    return bytes([FORMAT]) + _COMPRESSOR.compress(_ENCODER.encode(stored))


def decode(blob: bytes) -> AccountUsage:
    if blob[0] == FORMAT:
        stored = _DECODER.decode(_DECOMPRESSOR.decompress(blob[1:]))
        columns = day_columns.from_bytes(stored.columns)
        return _decoded(stored, columns=columns, unfolded=stored.unfolded)
    if blob[0] not in (1, 2):
        raise ValueError(f"usage state of format {blob[0]}; this version reads 1 to {FORMAT}")
    before = _DECODER_BEFORE.decode(_DECOMPRESSOR.decompress(blob[1:]))
    if blob[0] == 1:
        before.kept_from, before.whole_from = min(before.days, default=0), UNKNOWN
    state = _decoded(
        before,
        unfolded=before.days,
        seen=IdWindow.of(before.seen),
        seen_grown=set(before.seen),  # a value written before: its window moves out
    )
    state.fold_older()  # its days in arrays, as a value of this format reads
    return state


def _decoded(stored: _Columns | _Stored, **days: Any) -> AccountUsage:
    """A state of what every format stores, and ``days`` (its days, as that format holds
    them, and what it holds of the dedup window)."""
    return AccountUsage(
        users=stored.users,
        first_active=stored.first_active,
        events_seen=stored.events_seen,
        names=stored.names,
        kept_from=stored.kept_from,
        whole_from=stored.whole_from,
        **days,
    )
