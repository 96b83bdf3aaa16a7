# shellcheck shell=bash
# Source this file (as root, on Debian) to get a PostgreSQL server for the tests:
#
#     source .ci/postgres.sh
#
# It installs PostgreSQL from the system packages if needed, starts the
# cluster without systemd (pg_ctlcluster), creates the role and database
# "voicepipe"/"voicepipe_test" if missing, and exports
# VOICEPIPE_TEST_POSTGRES_DSN. Safe to source again on the same machine.
# Being sourced, it never calls `exit` or `set -e`; it returns non-zero on failure.

_voicepipe_pg_setup() {
    local user=voicepipe password=voicepipe db=voicepipe_test
    local ver port status i

    if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null \
        || ! command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "postgres.sh: installing PostgreSQL from the system packages" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            postgresql postgresql-client >/dev/null || return 1
    fi

    ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    if [ -z "$ver" ]; then
        echo "postgres.sh: no PostgreSQL version under /usr/lib/postgresql" >&2
        return 1
    fi
    # The package creates the "main" cluster unless told not to; make sure it exists.
    if ! pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" {found = 1} END {exit !found}'; then
        pg_createcluster "$ver" main >/dev/null || return 1
    fi
    port=$(pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" {print $3}')
    status=$(pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" {print $4}')
    if [ "$status" != "online" ]; then
        # No systemd in CI containers: pg_ctlcluster starts the server directly.
        pg_ctlcluster "$ver" main start || return 1
    fi
    for i in $(seq 1 60); do
        pg_isready -q -h 127.0.0.1 -p "$port" && break
        sleep 0.5
    done
    if ! pg_isready -q -h 127.0.0.1 -p "$port"; then
        echo "postgres.sh: server on 127.0.0.1:$port did not become ready" >&2
        return 1
    fi

    runuser -u postgres -- psql -q -p "$port" -v ON_ERROR_STOP=1 -d postgres >/dev/null <<SQL || return 1
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$user') THEN
        CREATE ROLE $user LOGIN PASSWORD '$password';
    ELSE
        ALTER ROLE $user LOGIN PASSWORD '$password';
    END IF;
END
\$\$;
SQL
    if [ "$(runuser -u postgres -- psql -p "$port" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
        runuser -u postgres -- createdb -p "$port" -O "$user" "$db" || return 1
    fi

    export VOICEPIPE_TEST_POSTGRES_DSN="postgresql://$user:$password@127.0.0.1:$port/$db"
    echo "postgres.sh: PostgreSQL $ver ready; VOICEPIPE_TEST_POSTGRES_DSN=$VOICEPIPE_TEST_POSTGRES_DSN" >&2
}

_voicepipe_pg_setup
_voicepipe_pg_status=$?
unset -f _voicepipe_pg_setup
# shellcheck disable=SC2317
return "$_voicepipe_pg_status" 2>/dev/null || exit "$_voicepipe_pg_status"
