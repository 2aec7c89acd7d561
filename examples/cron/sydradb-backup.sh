#!/bin/sh
# sydradb-backup: one archive of a SydraDB data directory a run (nightly
# from cron or a systemd timer), verified, then old archives pruned.
#
# Silent on success. On failure: one line per failed step on stderr and
# exit 1 (cron mails it, systemd marks the unit failed). Every step that
# runs records its outcome in node_exporter textfile metrics, one file
# per step in METRICS_DIR:
#   sydra_archive.prom         create: sydra_archive_last_run_success, ...
#   sydra_archive_verify.prom  sydra_archive_verify_last_run_success, ...
#   sydra_archive_prune.prom   sydra_archive_prune_last_run_success, ...
#
# Steps:
#   create  an archive in BACKUP_DIR (a directory, or s3://bucket/prefix/)
#   verify  --deep: every byte checked, and every WAL record, segment,
#           tags.json and MANIFEST decoded as SydraDB would read them
#           (a damaged file in the data dir fails here); for an
#           incremental, first --chain --read-data: every base it needs
#           present, the one recorded, and read whole
#   prune   only when create and verify succeeded (a bad archive must not
#           push a good one out of the rotation); a failed create or
#           verify is the one line, the steps after it do not run
#
# Needs: sydra-archive, a POSIX sh, mktemp, sed, grep. Settings (environment):
#   SYDRADB_DATA   the data directory            [/var/lib/sydradb]
#   BACKUP_DIR     where archives go             [/backup/sydradb]
#   METRICS_DIR    node_exporter textfile dir    [/var/lib/node_exporter/textfile]
#   SYDRA_ARCHIVE  the sydra-archive binary      [sydra-archive]
#   CREATE_FLAGS   more create flags (split on spaces), e.g. "--incremental"
#                  or "--passphrase-file /etc/sydradb/backup.pass"
#   READ_FLAGS     flags that let verify and prune decrypt, e.g.
#                  "--passphrase-file /etc/sydradb/backup.pass"
#   KEEP           the retention rules [--keep-daily 7 --keep-weekly 4 --keep-monthly 12]
set -eu

data=${SYDRADB_DATA:-/var/lib/sydradb}
dir=${BACKUP_DIR:-/backup/sydradb}
metrics=${METRICS_DIR:-/var/lib/node_exporter/textfile}
bin=${SYDRA_ARCHIVE:-sydra-archive}
create_flags=${CREATE_FLAGS:-}
read_flags=${READ_FLAGS:-}
keep=${KEEP:---keep-daily 7 --keep-weekly 4 --keep-monthly 12}

err=$(mktemp)
out=$(mktemp)
trap 'rm -f "$err" "$out"' EXIT
failed=0

# step NAME COMMAND...: runs COMMAND, its stdout in $out; on failure,
# says so in one line (with the command's last line on stderr) and
# returns 1. A successful command's warnings are passed on.
step() {
    name=$1
    shift
    if "$@" >"$out" 2>"$err"; then
        cat "$err" >&2
        return 0
    else
        code=$?
    fi
    why=$(sed -n '$p' "$err")
    echo "sydradb-backup: $name failed (exit $code): ${why:-no message}" >&2
    failed=1
    return 1
}

# shellcheck disable=SC2086 # the flag variables are split on purpose
if step create "$bin" create "$data" -o "${dir%/}/" -q --json $create_flags \
    --metrics-file "$metrics/sydra_archive.prom"; then
    # The first field of the report: {"archive":"<path or URL>",...
    archive=$(sed -n 's/^{"archive":"\([^"]*\)".*/\1/p' "$out")
    verified=0
    if [ -z "$archive" ]; then
        echo "sydradb-backup: verify failed: create did not report the archive it wrote" >&2
        failed=1
    elif grep -q '"kind":"incremental"' "$out"; then
        step "verify --chain --read-data" "$bin" verify --chain --read-data -q $read_flags \
            --metrics-file "$metrics/sydra_archive_verify.prom" "$archive" &&
            step "verify --deep" "$bin" verify --deep -q $read_flags \
                --metrics-file "$metrics/sydra_archive_verify.prom" "$archive" &&
            verified=1
    else
        step "verify --deep" "$bin" verify --deep -q $read_flags \
            --metrics-file "$metrics/sydra_archive_verify.prom" "$archive" &&
            verified=1
    fi
    if [ "$verified" = 1 ]; then
        step prune "$bin" prune "$dir" $keep --yes -q $read_flags \
            --metrics-file "$metrics/sydra_archive_prune.prom" || true
    fi
fi

exit "$failed"
