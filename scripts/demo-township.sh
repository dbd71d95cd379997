#!/usr/bin/env bash
# The fieldsync demo: a township (红星镇) with five villages, a few hundred children with
# households, visitors, a volunteer and a supervisor, each device a real replica syncing
# with a real fieldsyncd over WebSocket. Devices go offline, record visits, edit child files
# concurrently (one identity conflict goes to the supervisor's review queue), file a
# mandatory report, come back and sync. Then it prints where to look and what synced.
#
# Usage: scripts/demo-township.sh [--children N] [--no-wait]
#   --children N   children per village (default 40)
#   --no-wait      stop the server at the end instead of leaving it running for a look
# Run it through scripts/demo.sh, which installs and builds first.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PER_VILLAGE=40
WAIT=1
while [ $# -gt 0 ]; do
  case "$1" in
    --children) PER_VILLAGE=$2; shift 2 ;;
    --no-wait) WAIT=0; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 1 ;;
  esac
done
SRV=$ROOT/build/server/fieldsyncd
CLI=$ROOT/build/client-sdk/fieldsync
[ -x "$SRV" ] && [ -x "$CLI" ] || { echo "build first: bash scripts/demo.sh" >&2; exit 1; }
export FIELDSYNC_SCHEMA=$ROOT/schema/fieldsync.yaml
RUN=$ROOT/build/demo-run
rm -rf "$RUN"; mkdir -p "$RUN"
cd "$RUN"

WEB=()
[ -d "$ROOT/server/web" ] && WEB=(--web "$ROOT/server/web")
"$SRV" --db server.db --listen 127.0.0.1:0 "${WEB[@]}" >server.out 2>server.log &
SRV_PID=$!
cleanup() { kill "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 50); do grep -q listening server.out 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's/^fieldsyncd listening on //p' server.out)
[ -n "$ADDR" ] || { echo "the server did not start:"; cat server.log; exit 1; }
echo "== server: fieldsyncd on $ADDR (store $RUN/server.db)"

admin() { "$SRV" admin --db server.db "$@"; }
json_get() { sed -n "s/.*\"$1\": *\"\\([^\"]*\\)\".*/\\1/p" | head -1; }

VCODES=(hx-01 hx-02 hx-03 hx-04 hx-05)
VNAMES=(石门村 青山村 白云村 梨树村 龙井村)
VISITORS=(zhang.min li.hua wang.fang chen.jing liu.yang)
admin township add hx 红星镇 >/dev/null
for i in "${!VCODES[@]}"; do
  admin village add "${VCODES[$i]}" --township hx "${VNAMES[$i]}" >/dev/null
  admin user add "${VISITORS[$i]}" --role visitor --villages "${VCODES[$i]}" >/dev/null
done
admin user add zhao.she --role volunteer --villages hx-01,hx-02 >/dev/null   # 社工
admin user add sun.zhen --role supervisor --township hx >/dev/null           # 乡镇
echo "demo-supervisor" | admin user password sun.zhen >/dev/null
USERS=("${VISITORS[@]}" zhao.she sun.zhen)
for u in "${USERS[@]}"; do
  out=$(admin --json device enrol "$u" --label "demo $u")
  dev=$(echo "$out" | json_get device); tok=$(echo "$out" | json_get token)
  "$CLI" --db "dev-$u.db" enrol --server "ws://$ADDR" --device "$dev" --token "$tok" >/dev/null
done
echo "== township 红星镇: 5 villages, ${#USERS[@]} users and devices enrolled"

SURN=(王 李 张 刘 陈 杨 黄 赵 吴 周 徐 孙 马 朱 胡 郭 何 林 罗 高)
GIVEN=(小明 小红 欣怡 子涵 浩然 梓萱 宇轩 雨桐 思远 佳琪 俊杰 诗涵 晨曦 一诺 天佑 若曦)
CAT=(both_parents_away one_away_other_incapable)
GUARD=(grandparent grandparent grandparent relative entrusted)
RISK=(low low low medium medium high)
cli() { local u=$1; shift; "$CLI" --db "dev-$u.db" "$@"; }

echo "== visitors register children offline (一人一档案): $PER_VILLAGE per village"
declare -A FIRST_CHILD
n=0
for i in "${!VCODES[@]}"; do
  u=${VISITORS[$i]}; v=${VCODES[$i]}
  for k in $(seq "$PER_VILLAGE"); do
    n=$((n + 1))
    hh=$(cli "$u" --json household add --village "$v" \
           --field "address=${VNAMES[$i]}$(( k % 9 + 1 ))组$(( k * 7 % 40 + 1 ))号" \
           --field "guardian_name=${SURN[$(( (n + 3) % 20 ))]}奶奶" \
           --field "father_work_place=广东东莞" | json_get id)
    gender=$([ $((n % 2)) = 0 ] && echo female || echo male)
    id=$(cli "$u" --json child add --village "$v" --name "${SURN[$((n % 20))]}${GIVEN[$((n * 7 % 16))]}" \
           --field "gender=$gender" --field "household=$hh" \
           --field "birth_date=20$(printf %02d $(( 11 + n % 9 )))-0$(( n % 9 + 1 ))-1$(( n % 9 ))" \
           --field "category=${CAT[$((n % 2))]}" --field "guardian_type=${GUARD[$((n % 5))]}" \
           --field "risk_level=${RISK[$((n % 6))]}" --field "in_difficulty=$([ $((n % 4)) = 0 ] && echo true || echo false)" \
           --field "school=${VNAMES[$i]}小学" --field "grade=$(( n % 6 + 1 ))" | json_get id)
    [ "$k" = 1 ] && FIRST_CHILD[$v]=$id
  done
  printf '   %s (%s): %s children and households recorded on %s\n' "${VNAMES[$i]}" "$v" "$PER_VILLAGE" "$u"
done

sync_dev() { cli "$1" --json sync | sed -n 's/.*"accepted": \([0-9]*\).*"refused": \([0-9]*\).*"received": \([0-9]*\).*/\1 accepted, \2 refused, \3 received/p'; }
echo "== signal returns: every device syncs"
for u in "${USERS[@]}"; do printf '   %-10s %s\n' "$u" "$(sync_dev "$u")"; done

C1=${FIRST_CHILD[hx-01]}
echo "== offline week: visits, concurrent edits of one child file, a mandatory report"
for i in "${!VCODES[@]}"; do
  u=${VISITORS[$i]}
  kids=$(cli "$u" --json list children --village "${VCODES[$i]}" | grep -o '"id": "[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/' | head -20)
  k=0
  for kid in $kids; do
    # visits spread over the last ten weeks, so that the page shows some overdue ones
    k=$((k + 1)); at=$(date -d "-$(( (k * 11 + i * 5) % 70 )) days" '+%Y-%m-%dT%H:%M')
    cli "$u" visit add --child "$kid" --kind home_visit --at "$at" \
      --field "living_situation=与祖辈同住，家中整洁" --field "mood=情绪稳定，见到走访人员很高兴" \
      --field "concerns=爷爷腿脚不便，放学后无人接送" >/dev/null
  done
done
# the visitor and the social worker both edit the same child while offline
cli zhang.min child edit "$C1" --field "name=王小明" --field "school=石门村中心小学" >/dev/null
cli zhao.she child edit "$C1" --field "name=王晓明" --field "risk_level=high" >/dev/null
cli zhao.she record add assessment --field "child=$C1" --field "safety=concern" \
  --field "services=psychological_counseling,guardianship_guidance" >/dev/null 2>&1 || true
# found two days ago, entered now: already past the 24 h the police have to accept it
cli li.hua report add --child "${FIRST_CHILD[hx-02]}" --category living_alone \
  --at "$(date -d '-2 days' '+%Y-%m-%dT%H:%M')" --observed "孩子独自在家三天，祖母住院" >/dev/null
echo "   li.hua filed a mandatory report (强制报告); wang.fang stays out of signal this round"

echo "== back in range (wang.fang still offline)"
for u in "${USERS[@]}"; do
  [ "$u" = wang.fang ] && continue
  printf '   %-10s %s\n' "$u" "$(sync_dev "$u")"
done
echo "== wang.fang comes back; the supervisor pulls the review queue"
printf '   %-10s %s\n' wang.fang "$(sync_dev wang.fang)"
printf '   %-10s %s\n' sun.zhen "$(sync_dev sun.zhen)"
cli sun.zhen reviews | sed 's/^/   /'

echo
echo "== summary per device"
printf '   %-10s %-8s %-8s %-8s\n' device pending refused cursor
for u in "${USERS[@]}"; do
  st=$(cli "$u" --json status)
  printf '   %-10s %-8s %-8s %-8s\n' "$u" \
    "$(echo "$st" | sed -n 's/.*"pending": \([0-9]*\).*/\1/p')" \
    "$(echo "$st" | sed -n 's/.*"refused": \([0-9]*\).*/\1/p')" \
    "$(echo "$st" | sed -n 's/.*"cursor": \([0-9]*\).*/\1/p')"
done
echo "== summary per village (the supervisor's replica, which has the whole township)"
printf '   %-7s %-8s %-9s %-7s %-9s %s\n' village name children visits reports records_on_server
for i in "${!VCODES[@]}"; do
  v=${VCODES[$i]}
  kids=$(cli sun.zhen --json list children --village "$v" | grep -o '"id": "[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/')
  nk=0; nv=0
  for kid in $kids; do
    nk=$((nk + 1))
    nv=$((nv + $(cli sun.zhen --json list visits --child "$kid" | { grep -o '"type": "visit"' || true; } | wc -l)))
  done
  nr=0
  for kid in $(cli sun.zhen --json list reports --all | { grep -o '"child": "[^"]*"' || true; } | sed 's/.*"\([^"]*\)"$/\1/'); do
    case " $(echo $kids) " in *" $kid "*) nr=$((nr + 1)) ;; esac
  done
  ns=$(sqlite3 server.db "SELECT count(*) FROM records WHERE scope = '$v'")
  printf '   %-7s %-8s %-9s %-7s %-9s %s\n' "$v" "${VNAMES[$i]}" "$nk" "$nv" "$nr" "$ns"
done
echo
if [ -d "$ROOT/server/web" ]; then
  echo "Supervisor page:  http://$ADDR/   (user sun.zhen, password demo-supervisor)"
fi
echo "Metrics:          http://$ADDR/metrics"
echo "Devices:          $RUN/dev-*.db   e.g. $CLI --db $RUN/dev-zhang.min.db list children"
if [ "$WAIT" = 1 ] && [ -t 0 ]; then
  echo "The server keeps running; press Ctrl-C to stop it."
  wait "$SRV_PID" || true
fi
