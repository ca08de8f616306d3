# Shell steps shared by ncf/, dlrm/ and sim/prepare_dataset.sh; sourced, not run:
#   source "$(dirname "${BASH_SOURCE[0]}")/../common/prepare_lib.sh"
# The sourcing script defines usage() (printed by check_args). Sourcing puts the repository root on
# PYTHONPATH, so `"${PYTHON}" -m <recipe>.prepare_data` works from any directory without an install.

PREPARE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="${PREPARE_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
PYTHON="${PYTHON:-python}"

# check_args MIN "$@": -h/--help prints usage and exits 0; fewer than MIN arguments print it and exit 2.
check_args() {
    local min="$1"
    shift
    case "${1:-}" in
        -h | --help)
            usage
            exit 0
            ;;
    esac
    if [[ $# -lt ${min} ]]; then
        usage
        exit 2
    fi
}

# exit_if_prepared OUT_DIR FLAGS...: exit 0 when OUT_DIR already holds a dataset, unless FLAGS has --overwrite
# (which the recipe's prepare_data then honours).
exit_if_prepared() {
    local out="$1"
    shift
    if [[ -f "${out}/feature_spec.yaml" && " $* " != *" --overwrite "* ]]; then
        echo "${out}/feature_spec.yaml exists: already prepared (pass --overwrite to redo)"
        exit 0
    fi
}

# fetch URL TARGET: download with curl (or wget) into TARGET.part, then rename it to TARGET, so that an
# interrupted download never leaves a TARGET that looks complete; the .part file is removed on failure.
fetch() {
    local url="$1" target="$2"
    mkdir -p "$(dirname "${target}")"
    echo "downloading ${url} -> ${target}"
    trap "rm -f $(printf %q "${target}.part")" EXIT # expanded now: the trap may run after fetch returns
    if command -v curl >/dev/null 2>&1; then
        curl -fL --retry 3 -o "${target}.part" "${url}"
    elif command -v wget >/dev/null 2>&1; then
        wget -O "${target}.part" "${url}"
    else
        echo "error: neither curl nor wget is installed; download ${url} to ${target}" >&2
        exit 1
    fi
    mv "${target}.part" "${target}"
    trap - EXIT
}
