#!/usr/bin/env python3
"""Helper of bench/freeradius.sh: renders the config templates, derives the
SQL queries from Debian's, and loads the subscriber CSV into the rlm_sql
SQLite schema.

    helper.py render TEMPLATE OUT NAME=VALUE...
    helper.py queries DEBIAN_QUERIES MAIN_OUT LOGIN_REPLY_OUT
    helper.py load CSV DB SCHEMA

Only the standard library is used (sqlite3, csv).
"""

import csv
import os
import re
import sqlite3
import sys
import time

STATES = ("active", "reduced", "blocked", "released", "cancelled")

# The profile of each contract state, as rlm_sql group rows.
#
# radgroupcheck: every state group sets control:Contract-State (an internal
# attribute of raddb/dictionary) so that the unlang policy of
# sites-enabled/default knows the contract's state without another query:
# rlm_sql reads radgroupcheck for every group of the user anyway, and merges
# its assignment rows into the control list.
GROUP_CHECK = [(state, "Contract-State", ":=", state) for state in STATES]

# radgroupreply: what each profile puts in the Access-Accept.
GROUP_REPLY = [
    ("blocked", "Framed-Pool", ":=", "bloqueados"),
    ("blocked", "Mikrotik-Address-List", ":=", "bloqueados"),
    ("released", "Session-Timeout", ":=", "3600"),
    ("reduced", "Mikrotik-Rate-Limit", ":=", "2M/2M"),
]

HEADER = ["contract_id", "state", "username", "password", "reply"]
ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
CHUNK = 50_000


def die(message):
    print(f"freeradius.sh: error: {message}", file=sys.stderr)
    sys.exit(1)


def render(template, out, pairs):
    """Replaces @NAME@ by VALUE; every placeholder must be given."""
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            die(f"render: {pair!r} is not NAME=VALUE")
        values[name] = value
    with open(template, encoding="utf-8") as f:
        text = f.read()

    def substitute(match):
        name = match.group(1)
        if name not in values:
            die(f"render: {template} uses @{name}@, which was not given")
        return values[name]

    text = re.sub(r"@([A-Z][A-Z0-9_]*)@", substitute, text)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)


def queries(debian, main_out, login_reply_out):
    """Moves authorize_reply_query (radreply) out of Debian's queries.conf.

    The main `sql` instance keeps every other stock query (radcheck,
    groups, accounting); the user's own radreply is read by the
    `sql_login_reply` instance, which the policy calls only for contracts
    whose profile carries the login's attributes (active, released).
    """
    with open(debian, encoding="utf-8") as f:
        text = f.read()
    # A query is `name = "...."` over backslash-continued lines, ending at
    # the first unescaped closing quote.
    pattern = re.compile(r'^authorize_reply_query\s*=\s*"(?:[^"\\]|\\.)*"[^\n]*\n', re.M | re.S)
    found = pattern.findall(text)
    if len(found) != 1:
        die(f"cannot find authorize_reply_query in {debian} (found {len(found)})")
    main = pattern.sub(
        "# authorize_reply_query: moved to login_reply.conf (sql_login_reply)\n", text
    )
    with open(main_out, "w", encoding="utf-8") as f:
        f.write(main)
    with open(login_reply_out, "w", encoding="utf-8") as f:
        f.write("# authorize_reply_query of Debian's sqlite queries.conf, unchanged.\n")
        f.write(found[0])


def schema_statements(schema):
    """Debian's schema.sql split into (tables, indexes)."""
    with open(schema, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"--[^\n]*", "", text)
    tables, indexes = [], []
    for statement in text.split(";"):
        statement = statement.strip()
        if not statement:
            continue
        head = " ".join(statement.split()[:3]).upper()
        if head.startswith("CREATE INDEX") or head.startswith("CREATE UNIQUE INDEX"):
            indexes.append(statement)
        else:
            tables.append(statement)
    if not any("radcheck" in t for t in tables) or not indexes:
        die(f"{schema} does not look like rlm_sql's SQLite schema")
    return tables, indexes


def rows(csv_path):
    """Yields (username, state, password, reply attribute or None)."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            die(f"{csv_path} is empty")
        if [h.strip() for h in header] != HEADER:
            die(f"{csv_path}: header is {header}, expected {','.join(HEADER)}")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 5:
                die(f"{csv_path}:{line}: {len(row)} fields, expected 5")
            # An unquoted reply may hold commas: the fifth field runs to
            # the end of the line.
            _, state, username, password = row[:4]
            reply = ",".join(row[4:])
            if state not in STATES:
                die(f"{csv_path}:{line}: unknown state {state!r} (one of {', '.join(STATES)})")
            if not username:
                die(f"{csv_path}:{line}: empty username")
            attribute = None
            reply = reply.strip()
            if reply:
                name, sep, value = reply.partition("=")
                name, value = name.strip(), value.strip()
                if not sep or not ATTRIBUTE_NAME.match(name) or not value:
                    die(f"{csv_path}:{line}: reply {reply!r} is not 'Name = value'")
                attribute = (name, value)
            yield username, state, password, attribute


def load(csv_path, db_path, schema):
    started = time.monotonic()
    tables, indexes = schema_statements(schema)
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(db_path + suffix):
            os.remove(db_path + suffix)
    con = sqlite3.connect(db_path, isolation_level=None)
    # A bulk load: nothing to protect until the file is complete.
    con.execute("PRAGMA journal_mode = OFF")
    con.execute("PRAGMA synchronous = OFF")
    con.execute("PRAGMA cache_size = -262144")  # 256 MiB
    con.execute("PRAGMA temp_store = MEMORY")
    con.execute("BEGIN")
    for statement in tables:
        con.execute(statement)

    check_sql = "INSERT INTO radcheck (username, attribute, op, value) VALUES (?, 'Cleartext-Password', ':=', ?)"
    reply_sql = "INSERT INTO radreply (username, attribute, op, value) VALUES (?, ?, ':=', ?)"
    group_sql = "INSERT INTO radusergroup (username, groupname, priority) VALUES (?, ?, 1)"
    counts = dict.fromkeys(STATES, 0)
    replies = 0
    check, reply, group = [], [], []

    def flush():
        con.executemany(check_sql, check)
        con.executemany(reply_sql, reply)
        con.executemany(group_sql, group)
        check.clear()
        reply.clear()
        group.clear()

    for username, state, password, attribute in rows(csv_path):
        counts[state] += 1
        check.append((username, password))
        group.append((username, state))
        if attribute is not None:
            reply.append((username, attribute[0], attribute[1]))
            replies += 1
        if len(check) >= CHUNK:
            flush()
    flush()

    con.executemany(
        "INSERT INTO radgroupcheck (groupname, attribute, op, value) VALUES (?, ?, ?, ?)",
        GROUP_CHECK,
    )
    con.executemany(
        "INSERT INTO radgroupreply (groupname, attribute, op, value) VALUES (?, ?, ?, ?)",
        GROUP_REPLY,
    )
    # The schema's indexes (username on radcheck, radreply, radusergroup;
    # groupname on radgroupcheck, radgroupreply; radacct's), built once
    # the rows are in: much faster than maintaining them row by row.
    for statement in indexes:
        con.execute(statement)
    con.execute("COMMIT")
    # WAL is a property of the file: every connection FreeRADIUS opens
    # uses it (readers never wait for the accounting writer).
    mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    con.close()
    total = sum(counts.values())
    if total == 0:
        die(f"{csv_path} has no subscriber rows")
    print(
        f"freeradius.sh: loaded {total} logins ({', '.join(f'{s} {n}' for s, n in counts.items())}),"
        f" {replies} radreply rows into {db_path} (journal_mode={mode})"
        f" in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )


def main(argv):
    if len(argv) >= 3 and argv[0] == "render":
        render(argv[1], argv[2], argv[3:])
    elif len(argv) == 4 and argv[0] == "queries":
        queries(argv[1], argv[2], argv[3])
    elif len(argv) == 4 and argv[0] == "load":
        load(argv[1], argv[2], argv[3])
    else:
        die("usage: helper.py render TEMPLATE OUT NAME=VALUE... | queries DEBIAN MAIN LOGIN_REPLY | load CSV DB SCHEMA")


if __name__ == "__main__":
    main(sys.argv[1:])
