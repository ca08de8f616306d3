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

source "$(dirname "${BASH_SOURCE[0]}")/../common/prepare_lib.sh"
check_args 2 "$@"

AMAZON_DIR="$1"
OUT_DIR="$2"
shift 2
BASE_URL="${SIM_DATA_URL:-http://snap.stanford.edu/data/amazon/productGraph/categoryFiles}"

download() {  # download NAME.json.gz into AMAZON_DIR unless NAME.json or NAME.json.gz is there
    local name="$1"
    local target="${AMAZON_DIR}/${name}.json.gz"
    if [[ -f "${AMAZON_DIR}/${name}.json" || -f "${target}" ]]; then
        echo "${name}: present in ${AMAZON_DIR}"
        return
    fi
    fetch "${BASE_URL}/${name}.json.gz" "${target}"
}

exit_if_prepared "${OUT_DIR}" "$@"

download reviews_Books
download meta_Books

"${PYTHON}" -m sim.prepare_data --amazon_dataset_path "${AMAZON_DIR}" --output_path "${OUT_DIR}" \
    --reviews_file_name reviews_Books.json --metadata_file_name meta_Books.json "$@"
