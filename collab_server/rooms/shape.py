"""What a room's document holds, as far as checking an update against it needs.

yrs does not expose its structs, so this keeps a shadow beside the pycrdt document, fed every
update the document applies (the stored log at load, then each admitted update): which item ids
exist and under which parent, which items are shared types and how deeply they nest, and where
surrogate pairs sit in strings. With it an update is refused before it is stored when:

- it would nest shared types deeper than the limit (yrs deletes and encodes nested types
  recursively: Y.Maps nested 60,000 deep and then deleted overflowed its stack and killed the
  process);
- it would split a UTF-16 surrogate pair (an emoji) in a string: Yjs turns both halves into
  U+FFFD while yrs keeps the character and moves the insert, so the server's copy would differ
  from every client's;
- it makes a shared type whose parent the server does not have (its depth could not be
  checked), or it would leave more than `max_pending` items waiting for ids nobody sent;
- its items with no left origin would make yrs walk more than `max_scan` items in all (it
  places each by walking its list from the start; counted as every item of that list).
- it sends other items at the clocks of items that wait for a missing update: Yjs keeps the
  waiting ones, yrs places the new ones, and late joiners got another text than live clients
  (the same items sent again, as on a reconnect, pass).

Other items whose origins have not arrived are accepted, as yrs keeps them pending (two tabs of
one browser share edits with each other before the server has them), and placed once the ids
they wait for arrive.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from typing import Final

from sortedcontainers import SortedList

from collab_server.protocol import ProtocolError
from collab_server.protocol.update import (
    DELETED,
    GC,
    ID,
    SKIP,
    TYPE,
    DecodedUpdate,
    Struct,
    refused,
)

# The parent of an item, as kept here: a root type's name, or the id of the shared-type item it
# lives in; DEAD for items yrs integrates without a live parent (GC'd ranges, children of
# deleted types); PENDING while the ids it depends on have not arrived.
Parent = str | ID | None
DEAD: Final = None
PENDING: Final = (-1, -1)

Undo = Callable[[], object]


def _nothing() -> None:
    pass


class _Ranges:
    """One client's clock ranges and their parents, sorted, adjacent equal parents joined."""

    __slots__ = ("ends", "parents", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.parents: list[Parent] = []

    @property
    def end(self) -> int:
        return self.ends[-1] if self.ends else 0

    def find(self, clock: int) -> int:
        """The index of the range holding `clock`, or -1."""
        index = bisect_right(self.starts, clock) - 1
        if index >= 0 and clock < self.ends[index]:
            return index
        return -1

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) that no range covers."""
        if start >= self.end:
            return [(start, end)]
        gaps = []
        index = max(0, bisect_right(self.starts, start) - 1)
        clock = start
        while clock < end and index < len(self.starts):
            if self.starts[index] > clock:
                gaps.append((clock, min(end, self.starts[index])))
            clock = max(clock, self.ends[index])
            index += 1
        if clock < end:
            gaps.append((clock, end))
        return gaps

    def add(self, start: int, end: int, parent: Parent) -> Undo:
        """Record [start, end), which no range covers yet; return how to take it back."""
        if self.starts and start == self.ends[-1] and self.parents[-1] == parent:
            previous_end = self.ends[-1]

            def shrink() -> None:
                self.ends[-1] = previous_end

            self.ends[-1] = end
            return shrink
        index = bisect_right(self.starts, start)
        self.starts.insert(index, start)
        self.ends.insert(index, end)
        self.parents.insert(index, parent)

        def remove() -> None:
            del self.starts[index], self.ends[index], self.parents[index]

        return remove

    def assign(self, start: int, end: int, parent: Parent) -> Undo:
        """Give the covered range [start, end) a new parent, splitting ranges as needed."""
        first = last = self.find(start)
        if first < 0:
            return _nothing
        while last < len(self.starts) and self.starts[last] < end:
            last += 1
        # The undo keeps only the ranges replaced: a copy of all of them for each of the
        # thousands of items a snapshot places at once took gigabytes.
        replaced = (self.starts[first:last], self.ends[first:last], self.parents[first:last])
        starts: list[int] = []
        ends: list[int] = []
        parents: list[Parent] = []
        for s, e, p in zip(*replaced, strict=True):
            cut_start, cut_end = max(s, start), min(e, end)
            for piece in ((s, cut_start, p), (cut_start, cut_end, parent), (cut_end, e, p)):
                if piece[0] < piece[1]:
                    starts.append(piece[0])
                    ends.append(piece[1])
                    parents.append(piece[2])
        self.starts[first:last], self.ends[first:last], self.parents[first:last] = (
            starts,
            ends,
            parents,
        )
        placed = len(starts)

        def restore() -> None:
            stop = first + placed
            self.starts[first:stop], self.ends[first:stop], self.parents[first:stop] = replaced

        return restore


class _Waiting:
    """Items waiting for ids that have not arrived (or whose parent is not known yet), by the
    id each waits for: a range that arrives wakes only what waits inside it. Each change returns
    its undo for the admit's journal: copying what waits for every admit made each keystroke in
    a room where 900 items were parked cost 354 µs instead of 8."""

    __slots__ = ("_by_start", "_clocks", "_items", "_size", "types")

    def __init__(self) -> None:
        self._items: dict[ID, list[Struct]] = {}  # by the id they wait for
        self._by_start: dict[ID, Struct] = {}  # the same items by their own first id
        # client -> the clocks waited for. Sorted as they come: a list kept sorted by insertion
        # moved the whole list for each id that came in descending order (a stored snapshot
        # whose items wait on another client's in reverse: 100,000 of them took 5.3 s, not 2.3).
        self._clocks: dict[int, SortedList[int]] = {}
        self._size = 0
        self.types = 0  # shared types among them

    def __len__(self) -> int:
        return self._size

    def at(self, client: int, clock: int) -> Struct | None:
        """The waiting item that starts at (client, clock)."""
        return self._by_start.get((client, clock))

    def add(self, missing: ID, struct: Struct) -> Undo:
        structs = self._items.get(missing)
        first = structs is None
        if structs is None:
            structs = self._items[missing] = []
            self._clock_added(*missing)
        structs.append(struct)
        self._count(struct, 1)

        def undo() -> None:
            structs.pop()
            self._count(struct, -1)
            if first:
                del self._items[missing]
                self._clock_removed(*missing)

        return undo

    def pop_range(self, client: int, start: int, end: int) -> tuple[list[Struct], Undo]:
        """Take out the items waiting for ids of `client` in [start, end)."""
        clocks = self._clocks.get(client)
        if clocks is None:
            return [], _nothing
        first, last = clocks.bisect_left(start), clocks.bisect_left(end)
        if first == last:
            return [], _nothing
        taken = [(clock, self._items.pop((client, clock))) for clock in clocks.islice(first, last)]
        del clocks[first:last]
        if not clocks:
            del self._clocks[client]
        woken = [struct for _, structs in taken for struct in structs]
        for struct in woken:
            self._count(struct, -1)

        def undo() -> None:
            for clock, structs in taken:
                self._items[(client, clock)] = structs
                self._clock_added(client, clock)
            for struct in woken:
                self._count(struct, 1)

        return woken, undo

    def _count(self, struct: Struct, step: int) -> None:
        self._size += step
        if struct.kind == TYPE:
            self.types += step
        start = (struct.client, struct.clock)
        if step > 0:
            self._by_start[start] = struct
        elif self._by_start.get(start) is struct:  # a stored log may hold an item twice
            del self._by_start[start]

    def _clock_added(self, client: int, clock: int) -> None:
        clocks = self._clocks.get(client)
        if clocks is None:
            clocks = self._clocks[client] = SortedList()
        clocks.add(clock)

    def _clock_removed(self, client: int, clock: int) -> None:
        clocks = self._clocks[client]
        clocks.remove(clock)
        if not clocks:
            del self._clocks[client]


class DocumentShape:
    def __init__(
        self, *, max_depth: int, max_pending: int = 1000, max_scan: int = 1_000_000
    ) -> None:
        self.max_depth = max_depth
        self.max_pending = max_pending
        self.max_scan = max_scan
        self._items: dict[Parent, int] = {}  # list and text parents -> items placed in them
        self._scan = 0  # items yrs may walk to place the update being admitted
        self._ranges: dict[int, _Ranges] = {}
        self._types: dict[ID, tuple[int, str]] = {}  # shared-type item -> (depth, root name)
        self._deleted: dict[int, _Ranges] = {}  # items whose content is gone (ContentDeleted)
        self._surrogates: dict[int, set[int]] = {}  # client -> clocks of high surrogates
        self._waiting = _Waiting()  # items waiting for an id, by that id
        self._journal: list[Undo] = []
        # Ranges placed with their parent known during this admit: what waits in them retries.
        self._placed_ranges: list[tuple[int, int, int]] = []
        self._roots: set[str] = set()
        self._strict = True
        # The items the last admit placed that the document did not hold: (client, start, end).
        self.placed: list[tuple[int, int, int]] = []

    @property
    def pending_items(self) -> int:
        return len(self._waiting)

    def admit(self, update: DecodedUpdate, *, strict: bool = True) -> set[str]:
        """Check `update` against the document and record it; return the root types it
        touches. Raise `ProtocolError` (4422) and record nothing if it is refused.

        `strict=False` (a stored log being loaded) checks only the nesting depth: split
        surrogate pairs, shared types waiting for a parent and any number of waiting items pass,
        as they were accepted before these checks existed.
        """
        self._journal, self._placed_ranges, self._roots = [], [], set()
        self.placed = []
        self._strict = strict
        self._scan = 0
        try:
            for struct in update.structs:
                self._place_new(struct)
            self._retry_waiting()
            for client, clock, length in update.deletes:
                if self._is_surrogate(client, clock - 1) or self._is_surrogate(
                    client, clock + length - 1
                ):
                    self._split("a delete that splits a surrogate pair (half an emoji)")
                self._touch_range(client, clock, clock + length)
            if strict:
                self._check_waiting()
        except ProtocolError:
            for undo in reversed(self._journal):
                undo()
            raise
        finally:
            self._journal = []
        return self._roots

    # -- lookups ----------------------------------------------------------------------------------

    def _parent_of(self, client: int, clock: int) -> tuple[bool, Parent]:
        ranges = self._ranges.get(client)
        if ranges is None or (index := ranges.find(clock)) < 0:
            return False, DEAD
        return True, ranges.parents[index]

    def _content_deleted(self, client: int, clock: int) -> bool:
        ranges = self._deleted.get(client)
        return ranges is not None and ranges.find(clock) >= 0

    def _is_surrogate(self, client: int, clock: int) -> bool:
        clocks = self._surrogates.get(client)
        return clocks is not None and clock in clocks

    def _split(self, reason: str) -> None:
        # A stored log keeps what yrs made of such splits before they were refused.
        if self._strict:
            raise refused(reason, "surrogate_split")

    # -- placing ----------------------------------------------------------------------------------

    def _place_new(self, struct: Struct) -> None:
        client, clock, end = struct.client, struct.clock, struct.clock + struct.length
        if struct.kind == SKIP:
            return
        ranges = self._ranges.get(client)
        known = ranges.end if ranges is not None else 0
        if clock > known and self._strict:
            # A client sends its own history in order; yrs and merges mishandle the holes.
            raise refused(f"an update that skips clocks {known}-{clock - 1} of its client", "gap")
        held = self._waiting_at(client, clock) if clock < known and self._strict else None
        if held is not None and not _same_item(held, struct):
            # Yjs keeps the first one pending and yrs places the second: late joiners then got
            # another text than the live clients (bench/fuzz corpus late-joiner-diverges).
            raise refused("other content for clocks that wait for a missing update", "pending")
        pieces = [(clock, end)] if ranges is None else ranges.gaps(clock, end)
        if not pieces:
            return  # everything it holds is there already: yrs skips it
        if self._is_surrogate(client, clock - 1) or self._is_surrogate(client, end - 1):
            self._split("an item that overlaps half a surrogate pair (half an emoji)")
        if len(pieces) > 1 or pieces[0] != (clock, end):  # partly known already: yrs splits it
            own = set(struct.surrogates)
            if any(start - 1 in own or stop - 1 in own for start, stop in pieces):
                self._split("an item that overlaps half a surrogate pair (half an emoji)")
        if struct.kind == GC:
            self._stage(client, pieces, DEAD)
            return
        self.placed += [(client, start, stop) for start, stop in pieces]
        references = (struct.origin, struct.right_origin, struct.parent)
        if self._strict and any(
            isinstance(reference, tuple) and reference[0] == client and reference[1] >= clock
            for reference in references
        ):
            # What an item was inserted next to (or into) existed before it.
            raise refused("an item that refers to itself or to its client's later items")
        self._check_inserts_between_halves(struct)
        if struct.surrogates:
            self._add_surrogates(client, struct.surrogates)
        if struct.kind == DELETED:
            self._stage_deleted(client, pieces)
        missing, parent = self._resolve(struct)
        if missing is not None:
            self._wait(missing, struct)
            parent = PENDING
        else:
            self._record_type(struct, parent)
            self._count_walk(struct, parent)
        self._stage(client, pieces, parent)

    def _count_walk(self, struct: Struct, parent: Parent) -> None:
        if struct.keyed or parent is DEAD:
            return
        items = self._items.get(parent, 0)
        if struct.origin is None:
            self._scan += items
            if self._scan > self.max_scan and self._strict:
                raise refused(
                    "items placed from the start of a long list (more than "
                    f"{self.max_scan} steps for the CRDT core)",
                    "limits",
                )
        self._items[parent] = items + 1
        self._journal.append(lambda: self._items.__setitem__(parent, items))

    def _check_inserts_between_halves(self, struct: Struct) -> None:
        if (struct.origin is not None and self._is_surrogate(*struct.origin)) or (
            struct.right_origin is not None
            and self._is_surrogate(struct.right_origin[0], struct.right_origin[1] - 1)
        ):
            self._split("an insert inside a surrogate pair (half an emoji)")

    def _resolve(self, struct: Struct) -> tuple[ID | None, Parent]:
        """(a missing id, DEAD) or (None, parent), as yrs would find the parent. An id is
        missing until it arrives and its own parent is known."""
        if isinstance(struct.parent, str):
            return None, struct.parent
        if struct.parent is not None:
            found, above = self._parent_of(*struct.parent)
            if not found or above == PENDING:
                return struct.parent, DEAD
            if struct.parent in self._types:
                return None, struct.parent
            if above is not DEAD and not self._content_deleted(*struct.parent) and self._strict:
                raise refused("an item whose parent is not a shared type")
            return None, DEAD  # under a deleted type: yrs integrates it as deleted
        neighbours = []
        for dependency in (struct.origin, struct.right_origin):
            if dependency is not None:
                found, parent = self._parent_of(*dependency)
                if not found or parent == PENDING:
                    return dependency, DEAD
                neighbours.append(parent)
        alive = [parent for parent in neighbours if parent is not DEAD]
        if len(alive) == 2 and alive[0] != alive[1] and self._strict:
            # Yjs never makes one; yrs integrates it, but encodes it back as something else.
            raise refused("an item whose two neighbours live in different types")
        return None, alive[0] if alive else DEAD  # yrs takes the left neighbour's parent first

    def _record_type(self, struct: Struct, parent: Parent) -> None:
        self._touch(parent)
        if struct.kind != TYPE or parent is DEAD:
            return
        if isinstance(parent, str):
            depth, root = 1, parent
        else:
            above = self._types.get(parent)
            if above is None:
                return  # under a type that is itself still waiting: dead until it is placed
            depth, root = above[0] + 1, above[1]
        if depth > self.max_depth:
            raise refused(f"shared types nested deeper than {self.max_depth}", "depth")
        item = (struct.client, struct.clock)
        self._types[item] = (depth, root)
        self._journal.append(lambda: self._types.pop(item, None))

    def _stage(self, client: int, pieces: list[tuple[int, int]], parent: Parent) -> None:
        ranges = self._ranges.get(client)
        if ranges is None:
            ranges = self._ranges[client] = _Ranges()
            self._journal.append(lambda: self._ranges.pop(client, None))
        for start, end in pieces:
            self._journal.append(ranges.add(start, end, parent))
            if parent != PENDING:
                self._placed_ranges.append((client, start, end))

    def _stage_deleted(self, client: int, pieces: list[tuple[int, int]]) -> None:
        ranges = self._deleted.get(client)
        if ranges is None:
            ranges = self._deleted[client] = _Ranges()
            self._journal.append(lambda: self._deleted.pop(client, None))
        for start, end in pieces:
            self._journal.append(ranges.add(start, end, DEAD))

    def _add_surrogates(self, client: int, clocks: tuple[int, ...]) -> None:
        known = self._surrogates.setdefault(client, set())
        new = set(clocks) - known
        known |= new
        self._journal.append(lambda: known.difference_update(new))

    def _waiting_at(self, client: int, clock: int) -> Struct | None:
        """The waiting item that starts at (client, clock), if that clock waits."""
        found, parent = self._parent_of(client, clock)
        if not found or parent != PENDING:
            return None
        return self._waiting.at(client, clock)

    def _wait(self, missing: ID, struct: Struct) -> None:
        self._journal.append(self._waiting.add(missing, struct))

    def _retry_waiting(self) -> None:
        """Place the items waiting for ids in the ranges placed, and then for theirs, until
        nothing moves. Only those: retrying every item waiting on a client whenever that client
        placed anything made a snapshot of interleaved typing quadratic (12,000 items, 36 s)."""
        while self._placed_ranges:
            woken, undo = self._waiting.pop_range(*self._placed_ranges.pop())
            self._journal.append(undo)
            for struct in woken:
                self._check_inserts_between_halves(struct)
                missing, parent = self._resolve(struct)
                if missing is not None:
                    self._wait(missing, struct)
                    continue
                self._record_type(struct, parent)
                start, end = struct.clock, struct.clock + struct.length
                self._journal.append(self._ranges[struct.client].assign(start, end, parent))
                self._placed_ranges.append((struct.client, start, end))

    def _check_waiting(self) -> None:
        if self._waiting.types:
            raise refused("a shared type whose parent the server does not have", "pending")
        if self.pending_items > self.max_pending:
            raise refused(
                f"more than {self.max_pending} items waiting for missing updates", "pending"
            )

    # -- which root types an update touches -----------------------------------------------------

    def _touch(self, parent: Parent) -> None:
        if isinstance(parent, str):
            self._roots.add(parent)
        elif parent is not DEAD and (known := self._types.get(parent)) is not None:
            self._roots.add(known[1])

    def _touch_range(self, client: int, start: int, end: int) -> None:
        ranges = self._ranges.get(client)
        if ranges is None:
            return
        index = max(0, bisect_right(ranges.starts, start) - 1)
        while index < len(ranges.starts) and ranges.starts[index] < end:
            if ranges.ends[index] > start:
                self._touch(ranges.parents[index])
            index += 1


def _same_item(held: Struct, struct: Struct) -> bool:
    """Whether `struct` can be the item `held` sent again: a client may resend it merged with
    what it typed next (longer), never placed elsewhere or with another kind of content."""
    return (held.kind, held.origin, held.right_origin, held.parent, held.keyed) == (
        struct.kind,
        struct.origin,
        struct.right_origin,
        struct.parent,
        struct.keyed,
    )
