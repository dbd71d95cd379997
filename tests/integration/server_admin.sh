#!/usr/bin/env bash
# server_admin.sh — the admin command line of fieldsyncd: usage, exit codes (0 ok, 1 usage,
# 2 not found or conflict, 3 store error), --json, the messages that say how to fix things,
# and that a device token is printed once and never stored; and the daemon's own options
# checked at start (--flush-chunk's range, TLS files, a second daemon on one store).
#
# Usage: server_admin.sh path/to/fieldsyncd     (CTest: server.admin)
# The commands with a running daemon and real data (export, backup/restore while serving)
# are in server_test.c (server.admin_data).
set -u
bin=${1:?usage: server_admin.sh path/to/fieldsyncd}
dir=$(mktemp -d /tmp/fs-server-admin-XXXXXX)
db=$dir/fieldsync.db
fails=0

# expect CODE CMD... : runs fieldsyncd CMD..., checks the exit status; output in $out/$err
expect() {
  local want=$1; shift
  out=$("$bin" "$@" 2>"$dir/err"); local got=$?
  err=$(cat "$dir/err")
  if [ "$got" != "$want" ]; then
    echo "FAIL: fieldsyncd $* -> exit $got, expected $want" >&2
    echo "  stdout: $out" >&2; echo "  stderr: $err" >&2
    fails=$((fails + 1))
  fi
}
# has TEXT WHERE : checks that $out (or $err) contains TEXT
has() {
  local text=$1 where=${2:-out} hay
  if [ "$where" = err ]; then hay=$err; else hay=$out; fi
  case "$hay" in
    *"$text"*) ;;
    *) echo "FAIL: expected '$text' in $where: $hay" >&2; fails=$((fails + 1)) ;;
  esac
}
a() { expect "$1" admin --db "$db" "${@:2}"; }

# help everywhere
expect 0 --help;                         has "usage: fieldsyncd"
expect 0 admin --help;                   has "device enrol"
expect 0 admin device enrol --help;      has "prints its id and token ONCE"
expect 1 admin;                          has "usage" err
expect 1 admin frobnicate;               has "unknown command" err
expect 1 --bogus value
expect 1 --listen nowhere

# no store yet
a 2 device list;                         has "no store at" err
a 2 --json user list;                    has '"ok":false'

# townships and villages
a 1 township add "a b" 乡;               has "not valid" err
a 0 township add T1 一乡;                has "township T1"
a 2 township add T1 again;               has "already exists" err
a 0 --json township add T2 二乡;         has '"ok":true,"township":{"code":"T2","name":"二乡"}'
a 1 village add V1 一村;                 has "--township" err
a 2 village add V1 --township TX 一村;   has "no township 'TX': create it with fieldsyncd admin township add TX NAME" err
a 0 village add V1 --township T1 一村
a 0 village add V2 --township T1 二村
a 2 village add T2 --township T1 撞名;   has "already exists as a township" err
a 0 --json village list --township T1;   has '"code":"V2"'
a 0 township list;                       has "2 villages"

# users
a 1 user add ana --role pilot --villages V1;       has "the schema's roles are visitor, volunteer, supervisor, admin" err
a 1 user add ana --role visitor;                   has "exactly one scope" err
a 1 user add ana --role visitor --villages V1 --township T1; has "exactly one scope" err
a 2 user add ana --role visitor --villages V1,V9;  has "no village 'V9'" err
a 0 user add ana --role visitor --villages V1,V2;  has "device enrol ana"
a 2 user add ana --role visitor --villages V1;     has "already exists" err
a 1 user add kid --role volunteer --children not-a-uuid; has "not a record id" err
a 0 --json user add kid --role volunteer --children 0190A1B2C3D47E5F8A9B0C1D2E3F4A5B
has '"values":["0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"]'
a 0 user add sue --role supervisor --township T1
a 2 user scope nobody --villages V1;               has "no user 'nobody'" err
a 0 user scope ana --villages V1
a 0 --json user list;                               has '"name":"ana","role":"visitor","scope":{"kind":"villages","values":"V1"}'

# passwords: from stdin, hashed with argon2id
out=$(echo "short" | "$bin" admin --db "$db" user password sue 2>&1); [ $? = 1 ] || { echo "FAIL: short password accepted" >&2; fails=$((fails + 1)); }
out=$(echo "a long enough password" | "$bin" admin --db "$db" user password sue); [ $? = 0 ] || { echo "FAIL: password" >&2; fails=$((fails + 1)); }
sqlite3 "$db" "SELECT password FROM srv_users WHERE name = 'sue'" | grep -q '^\$argon2id\$' \
  || { echo "FAIL: password not stored as argon2id" >&2; fails=$((fails + 1)); }

# devices: the token is shown once and only its hash is kept
a 2 device enrol nobody;                 has "no user 'nobody': create it with fieldsyncd admin user add nobody" err
a 0 device enrol ana --label "平板 3";   has "device "
id=$(printf '%s\n' "$out" | sed -n 's/^device //p')
token=$(printf '%s\n' "$out" | sed -n 's/^token //p')
has "shown only this once" err
[ ${#token} = 47 ] && [ "${token#fs1_}" != "$token" ] \
  || { echo "FAIL: token '$token' is not fs1_ + 43 chars" >&2; fails=$((fails + 1)); }
if grep -qa -- "${token#fs1_}" "$db" "$db-wal" 2>/dev/null; then
  echo "FAIL: the token is stored in the database" >&2; fails=$((fails + 1))
fi
a 0 --json device enrol ana;             has '"token":"fs1_'
a 0 device list --user ana;              has "$id"; has "平板 3"
a 0 --json device list;                  has "\"device\":\"$id\""
a 1 device revoke 12345;                 has "not a device id" err
a 2 device revoke 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b; has "no device" err
a 0 device rotate "$id";                 has "token fs1_"
a 0 device revoke "$id";                 has "revoked"
a 0 --json device revoke "$id";          has '"already":true'
a 2 device rotate "$id";                 has "is revoked" err
a 0 device list;                         has "revoked"

# backup and restore (no daemon running)
a 0 --json backup "$dir/b.db";           has '"backup":'
a 0 township add T3 三乡
a 0 restore "$dir/b.db";                 has "restored"
a 0 township list
case "$out" in *T3*) echo "FAIL: restore did not restore" >&2; fails=$((fails + 1)) ;; esac
a 2 restore "$dir/none.db";              has "no backup file" err

# the daemon's own command line
# start NAME ARGS... : starts fieldsyncd ARGS... in the background (stdout and stderr in
# $dir/NAME.out and .err), waits up to 10 s for its "listening" line; sets $pid and $port
start() {
  local name=$1; shift
  "$bin" "$@" >"$dir/$name.out" 2>"$dir/$name.err" &
  pid=$!
  for _ in $(seq 100); do
    grep -q listening "$dir/$name.out" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  port=$(sed -n 's/^fieldsyncd listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$dir/$name.out")
  [ -n "$port" ] || { echo "FAIL: fieldsyncd $* did not start" >&2; cat "$dir/$name.err" >&2; fails=$((fails + 1)); }
}
# stop NAME : SIGTERM to the daemon start NAME began ($pid); it must exit 0
stop() {
  kill -TERM "$pid" 2>/dev/null; wait "$pid"; local st=$?
  [ $st = 0 ] || { echo "FAIL: daemon $1 exit $st after SIGTERM" >&2; cat "$dir/$1.err" >&2; fails=$((fails + 1)); }
}

# --flush-chunk N: 0 (whole flushes) to 1,000,000; anything else stops it at the command line
# (exit 1, the value named). The store's folder does not exist: a value wrongly accepted is
# exit 3 (cannot create the store), not a daemon left serving
expect 0 --help;                         has "--flush-chunk N"
for bad in -1 abc "" 12x 1000001 99999999999999999999; do
  expect 1 --db "$dir/none/chunk.db" --listen 127.0.0.1:0 --no-web --flush-chunk "$bad"
  has "bad option or value: --flush-chunk $bad (see --help)" err
done
expect 1 --db "$dir/none/chunk.db" --flush-chunk; has "missing value: --flush-chunk" err
for good in 0 1 1000000; do
  start chunk$good --db "$dir/chunk.db" --listen 127.0.0.1:0 --no-web --flush-chunk $good
  stop chunk$good
done

# TLS (wss://, https://) when openssl and curl are here
expect 1 --db "$db" --tls-cert "$dir/none.pem" --tls-key "$dir/none.pem"; has "cannot read --tls-cert" err
expect 1 --db "$db" --tls-cert "$dir/none.pem";                            has "go together" err
if command -v openssl >/dev/null && command -v curl >/dev/null; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/key.pem" -out "$dir/cert.pem" \
    -days 2 -subj /CN=127.0.0.1 >/dev/null 2>&1
  start tls --db "$db" --listen 127.0.0.1:0 --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem"
  body=$(curl -sk --max-time 5 "https://127.0.0.1:$port/healthz")
  [ "$body" = ok ] || { echo "FAIL: https healthz gave '$body'" >&2; fails=$((fails + 1)); }
  # a second daemon on the same store is refused
  expect 3 --db "$db" --listen 127.0.0.1:0; has "another fieldsyncd (pid $pid)" err
  a 2 restore "$dir/b.db";               has "is serving" err
  stop tls
fi

# store errors
echo "this is not a database" > "$dir/bad.db"
expect 3 admin --db "$dir/bad.db" township list
expect 3 admin --db "$dir/bad.db" --json township add X 乡; has '"exit":3'

if [ $fails = 0 ]; then
  rm -rf "$dir"
  echo "server admin: ok"
  exit 0
fi
echo "server admin: $fails failures (files kept in $dir)" >&2
exit 1
