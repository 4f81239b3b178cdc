#!/usr/bin/env bash
# FreeRADIUS 3.2 + rlm_sql on SQLite, the benchmark's point of comparison.
#
#   bench/freeradius.sh install
#       Installs Debian's freeradius (and freeradius-utils, for radclient)
#       if missing, and stops the package's own daemon if it started.
#   bench/freeradius.sh setup DIR CSV AUTH_PORT ACCT_PORT SECRET
#       Writes a self-contained config in DIR/raddb (derived from Debian's
#       /etc/freeradius/3.0 and the templates in bench/freeradius/) and
#       loads CSV (contract_id,state,username,password,reply) into the
#       rlm_sql SQLite database DIR/radius.db. The server listens on
#       127.0.0.1 only and knows one client, 127.0.0.1 with SECRET.
#   bench/freeradius.sh start DIR
#       Starts FreeRADIUS on DIR in the background, waits until it answers
#       a Status-Server, writes DIR/freeradius.pid and prints the pid.
#   bench/freeradius.sh stop DIR
#       SIGTERM, then SIGKILL after 10 s.
#
# Knobs, read by `setup` (environment):
#   FR_THREADS=8                      worker threads (a fixed pool)
#   FR_MAX_REQUESTS=65536             requests tracked at once
#   FR_REJECT_DELAY=0                 seconds an Access-Reject is delayed
#                                     (Debian's default: 1)
#   FR_SQLITE_BUSY_TIMEOUT_MS=10000   SQLite lock wait (Debian's: 200)
#   FR_REQUIRE_MESSAGE_AUTHENTICATOR=no
#
# Everything the server writes stays in DIR: log/ (radius.log, the
# server's output, the config check), run/, radius.db, freeradius.pid.
# See bench/freeradius/README.md.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEMPLATES=$HERE/freeradius
DEBIAN_RADDB=/etc/freeradius/3.0
START_DEADLINE_S=${FR_START_DEADLINE_S:-20}
STOP_DEADLINE_S=10

say() { printf 'freeradius.sh: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

usage() {
	cat >&2 <<'EOF'
usage: bench/freeradius.sh install
       bench/freeradius.sh setup DIR CSV AUTH_PORT ACCT_PORT SECRET
       bench/freeradius.sh start DIR
       bench/freeradius.sh stop DIR
EOF
	exit 2
}

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "not root and no sudo: cannot run $*"
	fi
}

# The path of a program, also where /usr/sbin is not on PATH.
find_program() {
	local name=$1 dir
	if command -v "$name" 2>/dev/null; then
		return 0
	fi
	for dir in /usr/sbin /usr/bin /sbin /bin; do
		if [ -x "$dir/$name" ]; then
			printf '%s\n' "$dir/$name"
			return 0
		fi
	done
	return 1
}

freeradius_bin() {
	find_program freeradius || die "freeradius is not installed: run 'bench/freeradius.sh install'"
}

radclient_bin() {
	find_program radclient || die "radclient is not installed (package freeradius-utils): run 'bench/freeradius.sh install'"
}

python_bin() {
	local python
	python=$(find_program python3) || die "python3 is needed to load the CSV (apt-get install python3)"
	"$python" -c 'import sqlite3' 2>/dev/null || die "$python has no sqlite3 module"
	printf '%s\n' "$python"
}

# Alive and not a zombie.
alive() {
	local pid=$1 state
	[ -r "/proc/$pid/stat" ] || return 1
	state=$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

is_freeradius() {
	local pid=$1 comm
	comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
	[ "$comm" = freeradius ]
}

# Sends SIGTERM, waits, then SIGKILL. $2: command prefix (as_root or none).
terminate() {
	local pid=$1 prefix=${2:-} deadline
	${prefix} kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + STOP_DEADLINE_S))
	while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
		sleep 0.1
	done
	if alive "$pid"; then
		say "pid $pid still running after ${STOP_DEADLINE_S} s: SIGKILL"
		${prefix} kill -KILL "$pid" 2>/dev/null || true
		deadline=$((SECONDS + 5))
		while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
			sleep 0.1
		done
		! alive "$pid" || die "pid $pid survives SIGKILL"
	fi
}

# The package's own daemon (started by its postinst where invoke-rc.d
# allows it) must not keep 1812/1813 nor take CPU during a run.
stop_package_daemon() {
	local file pid
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		if systemctl is-active --quiet freeradius 2>/dev/null; then
			say "stopping the freeradius systemd service the package started"
			as_root systemctl stop freeradius || say "warning: systemctl stop freeradius failed"
		fi
	fi
	for file in /run/freeradius/freeradius.pid /var/run/freeradius/freeradius.pid; do
		[ -r "$file" ] || continue
		pid=$(tr -dc '0-9' <"$file")
		if [ -n "$pid" ] && alive "$pid" && is_freeradius "$pid"; then
			say "stopping the package's freeradius daemon (pid $pid)"
			terminate "$pid" as_root
		fi
	done
}

cmd_install() {
	[ $# -eq 0 ] || usage
	local packages=()
	find_program freeradius >/dev/null || packages+=(freeradius)
	find_program radclient >/dev/null || packages+=(freeradius-utils)
	if [ ${#packages[@]} -eq 0 ]; then
		say "already installed: $("$(freeradius_bin)" -v 2>/dev/null | head -n 1)"
		return 0
	fi
	command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ${packages[*]} by hand"
	say "installing ${packages[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
		die "apt-get update failed"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}" ||
		die "apt-get install ${packages[*]} failed"
	stop_package_daemon
	say "installed: $("$(freeradius_bin)" -v 2>/dev/null | head -n 1)"
}

check_port() {
	local name=$1 value=$2
	if ! [[ $value =~ ^[0-9]+$ ]] || [ "$value" -lt 1 ] || [ "$value" -gt 65535 ]; then
		die "$name must be a port number (1-65535), not '$value'"
	fi
}

check_uint() {
	local name=$1 value=$2
	[[ $value =~ ^[0-9]+$ ]] || die "$name must be a whole number, not '$value'"
}

# The pid of the server started on DIR, if it runs.
running_pid() {
	local dir=$1 pid
	[ -r "$dir/freeradius.pid" ] || return 1
	pid=$(tr -dc '0-9' <"$dir/freeradius.pid")
	[ -n "$pid" ] && alive "$pid" && is_freeradius "$pid" || return 1
	printf '%s\n' "$pid"
}

# Shows the end of what the server wrote, for a failed start or check.
show_tail() {
	local file
	for file in "$@"; do
		[ -s "$file" ] || continue
		printf -- '--- last lines of %s:\n' "$file" >&2
		grep -v 'Opening SQLite database' "$file" | tail -n 30 >&2 || true
	done
}

cmd_setup() {
	[ $# -eq 5 ] || usage
	local dir=$1 csv=$2 auth_port=$3 acct_port=$4 secret=$5
	local threads=${FR_THREADS:-8}
	local max_requests=${FR_MAX_REQUESTS:-65536}
	local reject_delay=${FR_REJECT_DELAY:-0}
	local busy_timeout=${FR_SQLITE_BUSY_TIMEOUT_MS:-10000}
	local require_ma=${FR_REQUIRE_MESSAGE_AUTHENTICATOR:-no}

	check_port AUTH_PORT "$auth_port"
	check_port ACCT_PORT "$acct_port"
	[ "$auth_port" != "$acct_port" ] || die "AUTH_PORT and ACCT_PORT must differ"
	[ -n "$secret" ] || die "SECRET is empty"
	[[ $secret != *$'\n'* ]] || die "SECRET holds a newline"
	# (FreeRADIUS's config cannot say a backslash right before a quote
	# or at the end of a string.)
	if [[ $secret == *"\\'"* || $secret == *"\\" ]]; then
		die "SECRET cannot hold a backslash before a quote or at its end"
	fi
	check_uint FR_THREADS "$threads"
	[ "$threads" -ge 1 ] || die "FR_THREADS must be at least 1"
	check_uint FR_MAX_REQUESTS "$max_requests"
	check_uint FR_REJECT_DELAY "$reject_delay"
	check_uint FR_SQLITE_BUSY_TIMEOUT_MS "$busy_timeout"
	case $require_ma in
	yes | no) ;;
	*) die "FR_REQUIRE_MESSAGE_AUTHENTICATOR must be yes or no, not '$require_ma'" ;;
	esac
	if ! [ -f "$csv" ] || ! [ -r "$csv" ]; then
		die "cannot read the CSV '$csv'"
	fi

	local freeradius python
	freeradius=$(freeradius_bin)
	python=$(python_bin)
	local schema=$DEBIAN_RADDB/mods-config/sql/main/sqlite/schema.sql
	local queries=$DEBIAN_RADDB/mods-config/sql/main/sqlite/queries.conf
	if ! [ -r "$DEBIAN_RADDB/radiusd.conf" ] || ! [ -r "$schema" ] || ! [ -r "$queries" ]; then
		die "cannot read Debian's config in $DEBIAN_RADDB (package freeradius-config; readable by root and group freerad)"
	fi
	[ -x /usr/lib/freeradius/rlm_sql_sqlite.so ] || [ -r /usr/lib/freeradius/rlm_sql_sqlite.so ] ||
		die "/usr/lib/freeradius/rlm_sql_sqlite.so is missing (package freeradius)"

	local safe='^[A-Za-z0-9/._+-]+$'
	[[ $dir =~ $safe ]] ||
		die "DIR '$dir' may hold only letters, digits and / . _ + - (it is written into the config)"
	mkdir -p "$dir" || die "cannot create $dir"
	dir=$(cd "$dir" && pwd -P)
	[[ $dir =~ $safe ]] ||
		die "DIR '$dir' may hold only letters, digits and / . _ + - (it is written into the config)"
	csv=$(cd "$(dirname "$csv")" && pwd -P)/$(basename "$csv")
	local pid
	if pid=$(running_pid "$dir"); then
		die "a FreeRADIUS (pid $pid) runs on $dir: 'bench/freeradius.sh stop $dir' first"
	fi

	local raddb=$dir/raddb
	rm -rf "$raddb" "$dir/log" "$dir/run" "$dir/freeradius.pid" "$dir/freeradius.env"
	mkdir -p "$dir/log" "$dir/run"

	# Debian's tree, then only what PAP + rlm_sql accounting need.
	cp -R "$DEBIAN_RADDB" "$raddb" || die "cannot copy $DEBIAN_RADDB to $raddb"
	chmod -R u+rwX,go-w "$raddb"
	rm -rf "$raddb/certs" "$raddb/proxy.conf"
	find "$raddb/mods-enabled" "$raddb/sites-enabled" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
	# policy.d: only "accounting" (acct_unique) is used.
	find "$raddb/policy.d" -mindepth 1 -maxdepth 1 ! -name accounting -exec rm -rf {} +
	local module
	for module in always expr pap; do
		ln -s "../mods-available/$module" "$raddb/mods-enabled/$module"
	done

	"$python" "$TEMPLATES/helper.py" render "$TEMPLATES/radiusd.conf.in" "$raddb/radiusd.conf" \
		"DIR=$dir" "THREADS=$threads" "MAX_REQUESTS=$max_requests" "REJECT_DELAY=$reject_delay"
	# A single-quoted string of FreeRADIUS's config: \' stands for ', and
	# every other backslash is kept as it is.
	local quoted=${secret//\'/\\\'}
	"$python" "$TEMPLATES/helper.py" render "$TEMPLATES/clients.conf.in" "$raddb/clients.conf" \
		"SECRET=$quoted" "REQUIRE_MA=$require_ma"
	"$python" "$TEMPLATES/helper.py" render "$TEMPLATES/default.in" "$raddb/sites-available/default" \
		"AUTH_PORT=$auth_port" "ACCT_PORT=$acct_port"
	ln -s ../sites-available/default "$raddb/sites-enabled/default"
	"$python" "$TEMPLATES/helper.py" render "$TEMPLATES/sql.in" "$raddb/mods-available/sql" \
		"DB=$dir/radius.db" "BUSY_TIMEOUT_MS=$busy_timeout"
	ln -s ../mods-available/sql "$raddb/mods-enabled/sql"
	"$python" "$TEMPLATES/helper.py" queries "$queries" \
		"$raddb/mods-config/sql/main/sqlite/queries.conf" \
		"$raddb/mods-config/sql/main/sqlite/login_reply.conf"
	cat >>"$raddb/dictionary" <<'EOF'

# bench/freeradius.sh: the contract's state, set by the state group's
# radgroupcheck row (internal: never sent in a packet).
ATTRIBUTE	Contract-State		3010	string
EOF
	chmod -R go-w "$raddb"

	"$python" "$TEMPLATES/helper.py" load "$csv" "$dir/radius.db" "$schema"

	# What `start` needs to probe the server.
	printf 'AUTH_PORT=%q\nACCT_PORT=%q\nSECRET=%q\n' "$auth_port" "$acct_port" "$secret" >"$dir/freeradius.env"
	chmod 600 "$dir/freeradius.env"

	# FreeRADIUS's own check: parses everything, loads the modules and
	# opens the database.
	if ! "$freeradius" -XC -d "$raddb" >"$dir/log/config-check.log" 2>&1; then
		show_tail "$dir/log/config-check.log"
		die "FreeRADIUS refuses the config in $raddb (full output: $dir/log/config-check.log)"
	fi
	say "config in $raddb checked; 127.0.0.1 auth $auth_port, acct $acct_port, $threads threads"
}

load_env() {
	local dir=$1
	if ! [ -r "$dir/freeradius.env" ] || ! [ -r "$dir/raddb/radiusd.conf" ]; then
		die "$dir is not set up: run 'bench/freeradius.sh setup $dir CSV AUTH_PORT ACCT_PORT SECRET' first"
	fi
	# shellcheck source=/dev/null
	. "$dir/freeradius.env"
	: "${AUTH_PORT:?}" "${SECRET:?}"
}

# Status-Server to the auth port; true once the server answers.
probe() {
	local radclient=$1
	printf 'Message-Authenticator = 0x00\n' |
		"$radclient" -q -r 1 -t 0.5 "127.0.0.1:$AUTH_PORT" status "$SECRET" >/dev/null 2>&1
}

cmd_start() {
	[ $# -eq 1 ] || usage
	local dir=$1
	[ -d "$dir" ] || die "no directory $dir"
	dir=$(cd "$dir" && pwd -P)
	load_env "$dir"
	local freeradius radclient pid
	freeradius=$(freeradius_bin)
	radclient=$(radclient_bin)
	if pid=$(running_pid "$dir"); then
		die "FreeRADIUS already runs on $dir (pid $pid)"
	fi
	if probe "$radclient"; then
		die "something already answers RADIUS on 127.0.0.1:$AUTH_PORT"
	fi

	# This run's log alone (the previous one is kept as radius.log.old).
	local out=$dir/log/freeradius.out
	if [ -e "$dir/log/radius.log" ]; then
		mv -f "$dir/log/radius.log" "$dir/log/radius.log.old"
	fi
	: >"$out"
	# -f: no fork, so $! is the server; it logs to DIR/log/radius.log.
	"$freeradius" -f -d "$dir/raddb" </dev/null >>"$out" 2>&1 &
	pid=$!
	printf '%s\n' "$pid" >"$dir/freeradius.pid"

	local deadline=$((SECONDS + START_DEADLINE_S))
	until probe "$radclient"; do
		if ! alive "$pid"; then
			wait "$pid" 2>/dev/null || true
			rm -f "$dir/freeradius.pid"
			show_tail "$dir/log/radius.log" "$out"
			die "FreeRADIUS exited during start-up (check the config with: freeradius -XC -d $dir/raddb)"
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			terminate "$pid"
			rm -f "$dir/freeradius.pid"
			show_tail "$dir/log/radius.log" "$out"
			die "FreeRADIUS did not answer a Status-Server on 127.0.0.1:$AUTH_PORT within ${START_DEADLINE_S} s"
		fi
		sleep 0.05
	done
	say "FreeRADIUS answers on 127.0.0.1:$AUTH_PORT (pid $pid)"
	printf '%s\n' "$pid"
}

cmd_stop() {
	[ $# -eq 1 ] || usage
	local dir=$1 pid
	[ -d "$dir" ] || die "no directory $dir"
	if ! pid=$(running_pid "$dir"); then
		rm -f "$dir/freeradius.pid"
		say "no FreeRADIUS runs on $dir"
		return 0
	fi
	terminate "$pid"
	rm -f "$dir/freeradius.pid"
	say "stopped FreeRADIUS (pid $pid)"
}

main() {
	[ $# -ge 1 ] || usage
	local command=$1
	shift
	case $command in
	install) cmd_install "$@" ;;
	setup) cmd_setup "$@" ;;
	start) cmd_start "$@" ;;
	stop) cmd_stop "$@" ;;
	-h | --help | help) usage ;;
	*)
		say "unknown command '$command'"
		usage
		;;
	esac
}

main "$@"
