#!/usr/bin/env bash
# Preprocess Criteo click logs for DLRM; all logic is in dlrm.prepare_data (see dlrm/README.md).
#
#   dlrm/prepare_dataset.sh SRC OUT_DIR [prepare_data flags...]
#
#   dlrm/prepare_dataset.sh /data/criteo /data/dlrm                      # Terabyte: day_0 .. day_23
#   dlrm/prepare_dataset.sh /data/criteo_kaggle /data/dlrm_kaggle        # Kaggle: train.txt
#   dlrm/prepare_dataset.sh /data/criteo /data/dlrm --workers 64 --memory_limit 200GB
#
# SRC is a directory holding the decompressed day_* files or train.txt, or a Kaggle-format file.
# Nothing is downloaded: the Criteo logs are only given out after accepting Criteo's terms.
# Environment: PYTHON (interpreter, default python). Does nothing if OUT_DIR/feature_spec.yaml exists,
# unless --overwrite is among the flags.
set -euo pipefail

usage() {
    echo "usage: $0 SRC OUT_DIR [dlrm.prepare_data flags...]   (SRC: dir with day_0..day_23 or train.txt)" >&2
}

where_to_get_it() {
    cat >&2 <<'EOF'
Get the data (after accepting Criteo's terms), then decompress it into SRC:
  Terabyte (day_0.gz .. day_23.gz, ~1 TB unpacked): https://ailab.criteo.com/download-criteo-1tb-click-logs-dataset/
  Kaggle (dac.tar.gz -> train.txt, ~11 GB):         https://www.kaggle.com/c/criteo-display-ad-challenge/data
EOF
}

source "$(dirname "${BASH_SOURCE[0]}")/../common/prepare_lib.sh"
check_args 2 "$@"
SRC="$1"
OUT_DIR="$2"

if [[ ! -e "${SRC}" ]]; then
    echo "error: ${SRC} does not exist" >&2
    where_to_get_it
    exit 2
fi
if [[ -d "${SRC}" && ! -e "${SRC}/day_0" && ! -e "${SRC}/train.txt" ]]; then
    if compgen -G "${SRC}/day_*.gz" >/dev/null || [[ -e "${SRC}/train.txt.gz" || -e "${SRC}/dac.tar.gz" ]]; then
        echo "error: ${SRC} holds compressed files; decompress them first (gunzip day_*.gz / tar xzf dac.tar.gz)" >&2
    else
        echo "error: ${SRC} has neither day_0 .. day_23 (Terabyte) nor train.txt (Kaggle)" >&2
        where_to_get_it
    fi
    exit 2
fi
exit_if_prepared "${OUT_DIR}" "${@:3}"

exec "${PYTHON}" -m dlrm.prepare_data --input "${SRC}" --output "${OUT_DIR}" "${@:3}"
