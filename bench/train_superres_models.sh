#!/bin/bash
# Trains the shipped super-resolution models (and the ablation model) one after the other, one CPU
# thread each. Run from the repository root with the shared data at ../shared/data:
#   bench/train_superres_models.sh aviris_x4 agnostic_x4 aviris_x2 agnostic_x2 aviris_x4_nounmix
set -e
D=../shared/data
P=$D/sr_pool
AVIRIS_TRAIN="$P/abu-airport-1.hdr $P/abu-airport-2.hdr $P/abu-airport-3.hdr $P/abu-beach-1.hdr $P/abu-beach-2.hdr $P/abu-urban-1.hdr $P/abu-urban-2.hdr $P/hydice.hdr $P/sandiego.hdr $D/scenes/salton_sea/salton_sea.hdr $D/unmixing/jasper_ridge/jasper_ridge.hdr $D/unmixing/urban_subimage/urban_subimage.hdr"
# synthetic cubes (real textures, library spectra) for the AVIRIS ×4 models: bench/synthetic_sr_cubes.py
SYNTHETIC=runs/synthetic_sr
AVIRIS_VAL="--val $P/abu-airport-4.hdr --val $P/abu-beach-3.hdr --val $P/abu-urban-3.hdr --val $D/unmixing/cuprite/cuprite.hdr"
OTHER_VAL="--val $D/scenes/pavia_university/pavia_lr_hsi.hdr --val $D/scenes/muufl_gulfport/muufl_gulfport.hdr --val $D/scenes/houston2018/houston_hsi.hdr --val $D/scenes/houston2018/houston_rgb.hdr"
AVIRIS_TEXT="UnmixingSR for AVIRIS-like VNIR-SWIR imagers (about 160-224 bands, 400-2500 nm). Trained on the sr_pool ABU scenes (Kang et al., IEEE TGRS 2017, via jiojio0505/OT-AD), Salton Sea (Zhou et al., IEEE TGRS 2020), Jasper Ridge and the HYDICE Urban crop (Zhu, arXiv:1708.05125)."
SYNTHETIC_TEXT=" Also 24 synthetic 128x128 cubes (python bench/synthetic_sr_cubes.py --crops 12 -o runs/synthetic_sr): crops of the Pavia University and Houston 2018 colour images (GRSS DFC 2018) with USGS library spectra (Clark et al., USGS 1995 AVIRIS library)."
AGNOSTIC_TEXT="Band-agnostic default: the UnmixingSR trunk on groups of 4 neighbouring bands with shared weights, for any band count and any sensor. Trained on the same AVIRIS/HYDICE scenes plus Samson (Zhu, arXiv:1708.05125); validated on sensors it never saw (ROSIS Pavia University, CASI MUUFL Gulfport and Houston 2018, and a colour camera)."
COMMON="--epochs 40 --steps-per-epoch 100 --batch 1 --threads 1 --seed 0 --overwrite"
run() { echo "=== $(date +%T) $1"; shift; python -m hsiuu_cli -v train superres "$@"; echo "=== $(date +%T) done"; }
case " $* " in *" aviris_x4 "*|*" aviris_x4_nounmix "*) [ -d $SYNTHETIC ] || python bench/synthetic_sr_cubes.py --crops 12 -o $SYNTHETIC ;; esac
for job in "$@"; do
  case $job in
    aviris_x4) run $job $AVIRIS_TRAIN $SYNTHETIC $AVIRIS_VAL --scale 4 -o models/aviris_x4 $COMMON --description "$AVIRIS_TEXT$SYNTHETIC_TEXT" ;;
    aviris_x2) run $job $AVIRIS_TRAIN $AVIRIS_VAL --scale 2 -o models/aviris_x2 $COMMON --description "$AVIRIS_TEXT" ;;
    agnostic_x4) run $job $AVIRIS_TRAIN $D/unmixing/samson/samson.hdr $AVIRIS_VAL $OTHER_VAL --scale 4 --band-agnostic -o models/agnostic_x4 $COMMON --description "$AGNOSTIC_TEXT" ;;
    agnostic_x2) run $job $AVIRIS_TRAIN $D/unmixing/samson/samson.hdr $AVIRIS_VAL $OTHER_VAL --scale 2 --band-agnostic -o models/agnostic_x2 $COMMON --description "$AGNOSTIC_TEXT" ;;
    aviris_x4_nounmix) run $job $AVIRIS_TRAIN $SYNTHETIC $AVIRIS_VAL --scale 4 --no-unmixing -o runs/aviris_x4_nounmix $COMMON --description "Ablation: aviris_x4 without the unmixing branch (not shipped)." ;;
  esac
done
