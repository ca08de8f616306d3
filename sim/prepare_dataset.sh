#!/usr/bin/env bash
# Download (if missing) the Amazon Reviews 2014 Books files and prepare SIM's dataset; the logic is in
# sim.prepare_data.
#
#   sim/prepare_dataset.sh AMAZON_DIR OUT_DIR [prepare_data flags...]
#
#   sim/prepare_dataset.sh /data/amazon_books_2014 /data/sim
#   sim/prepare_dataset.sh /data/amazon_books_2014 /data/sim_prebatched --prebatch_train_size 4096 --prebatch_test_size 4096
#
# Files (DLE-SIM's scripts/download_amazon_books_2014.sh): reviews_Books.json.gz and
# meta_Books.json.gz from SNAP; a file counts as present as NAME.json or NAME.json.gz (kept gzipped:
# sim.prepare_data reads .gz directly). Environment: SIM_DATA_URL (base URL, default the SNAP folder below),
# PYTHON (interpreter, default python). Does nothing if OUT_DIR/feature_spec.yaml exists, unless --overwrite.
set -euo pipefail

usage() {
    echo "usage: $0 AMAZON_DIR OUT_DIR [prepare_data flags...]" >&2
}

case "${1:-}" in
    -h | --help)
        usage
        exit 0
        ;;
esac
if [[ $# -lt 2 ]]; then
    usage
    exit 2
fi

AMAZON_DIR="$1"
OUT_DIR="$2"
shift 2
BASE_URL="${SIM_DATA_URL:-http://snap.stanford.edu/data/amazon/productGraph/categoryFiles}"
PYTHON="${PYTHON:-python}"

download() {  # download NAME.json.gz into AMAZON_DIR unless NAME.json or NAME.json.gz is there
    local name="$1"
    local target="${AMAZON_DIR}/${name}.json.gz"
    if [[ -f "${AMAZON_DIR}/${name}.json" || -f "${target}" ]]; then
        echo "${name}: present in ${AMAZON_DIR}"
        return
    fi
    mkdir -p "${AMAZON_DIR}"
    echo "downloading ${BASE_URL}/${name}.json.gz -> ${target}"
    trap 'rm -f "${target}.part"' EXIT
    if command -v curl >/dev/null 2>&1; then
        curl -fL --retry 3 -o "${target}.part" "${BASE_URL}/${name}.json.gz"
    elif command -v wget >/dev/null 2>&1; then
        wget -O "${target}.part" "${BASE_URL}/${name}.json.gz"
    else
        echo "error: neither curl nor wget is installed; download ${BASE_URL}/${name}.json.gz to ${target}" >&2
        exit 1
    fi
    mv "${target}.part" "${target}"
    trap - EXIT
}

if [[ -f "${OUT_DIR}/feature_spec.yaml" && " $* " != *" --overwrite "* ]]; then
    echo "${OUT_DIR}/feature_spec.yaml exists: already prepared (pass --overwrite to redo)"
    exit 0
fi

download reviews_Books
download meta_Books

"${PYTHON}" -m sim.prepare_data --amazon_dataset_path "${AMAZON_DIR}" --output_path "${OUT_DIR}" \
    --reviews_file_name reviews_Books.json --metadata_file_name meta_Books.json "$@"
