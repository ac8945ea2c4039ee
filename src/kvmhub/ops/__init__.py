"""Operations: the journal (SQLite), per-resource locks, journalled steps with undo, cancel tokens, recovery.

Import the submodules you need (``kvmhub.ops.journal`` is what every command touches at start, kept light).
"""
