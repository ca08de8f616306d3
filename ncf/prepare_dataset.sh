#!/usr/bin/env bash
# Download (if missing), verify and preprocess a MovieLens dataset for NCF; all logic is in ncf.prepare_data.
#
#   ncf/prepare_dataset.sh [ml-20m|ml-1m|ml-25m|ml-10m|ml-100k] [RAW_DIR=/data/$NAME] [OUT_DIR=/data/cache/$NAME] [prepare_data flags...]
#
#   ncf/prepare_dataset.sh                                  # ml-20m: /data/ml-20m/ml-20m.zip -> /data/cache/ml-20m
#   ncf/prepare_dataset.sh ml-1m ~/data/ml-1m ~/cache/ml-1m --valid_negative 99
#
# Environment: NCF_DATA_URL (base URL, default https://files.grouplens.org/datasets/movielens),
# PYTHON (interpreter, default python). Does nothing if OUT_DIR/feature_spec.yaml exists, unless --overwrite
# is among the flags.
set -euo pipefail

usage() {
    echo "usage: $0 [ml-20m|ml-1m|ml-25m|ml-10m|ml-100k] [RAW_DIR=/data/NAME] [OUT_DIR=/data/cache/NAME] [prepare_data flags...]" >&2
}

source "$(dirname "${BASH_SOURCE[0]}")/../common/prepare_lib.sh"
check_args 0 "$@"
NAME="${1:-ml-20m}"
RAW_DIR="${2:-/data/${NAME}}"
OUT_DIR="${3:-/data/cache/${NAME}}"
BASE_URL="${NCF_DATA_URL:-https://files.grouplens.org/datasets/movielens}"

# Official MD5s from DLE's verify_dataset.sh; none is known for certain for the others.
case "${NAME}" in
    ml-1m) MD5="c4d9eecfca2ab87c1945afe126590906" ;;
    ml-20m) MD5="cd245b17a1ae2cc31bb14903e1204af3" ;;
    ml-25m | ml-10m | ml-100k) MD5="" ;;
    *)
        echo "error: unknown dataset '${NAME}'" >&2
        usage
        exit 2
        ;;
esac

exit_if_prepared "${OUT_DIR}" "${@:4}"

ZIP="${RAW_DIR}/${NAME}.zip"
if [[ ! -f "${ZIP}" ]]; then
    fetch "${BASE_URL}/${NAME}.zip" "${ZIP}"
fi

if [[ -n "${MD5}" ]]; then
    if ! echo "${MD5}  ${ZIP}" | md5sum --check --status -; then
        echo "error: ${ZIP}: MD5 is not the official ${MD5}; delete the file and run again" >&2
        exit 1
    fi
    echo "${ZIP}: MD5 OK"
else
    echo "note: no official MD5 is known for ${NAME}.zip; not verified"
fi

"${PYTHON}" -m ncf.prepare_data --input "${ZIP}" --output "${OUT_DIR}" "${@:4}"
