#!/usr/bin/env bash
# Fetch the offline training and evaluation images for the default model from the Debian archive.
#
#   bash recipes/default_model/fetch_data.sh
#
# Downloads .deb files into data/debs/ (training) and data/eval-debs/ (evaluation only), extracts
# the image files of each into data/extract/<pkg>/ or data/eval-extract/<pkg>/, and unpacks the
# image members of game zip archives (.pk3 .wz .zip .sh3f) into <pkg>/unzipped/<archive>/.
# Idempotent: a package already downloaded or extracted is skipped. See README.md beside this file.
set -euo pipefail

cd "$(dirname "$0")/../.."
DATA=data
PYTHON=${PYTHON:-python3}

# Training sources (docs: /work/shared/TRAINING-DATA.md). 0ad-data is 1.4 GB of DDS textures in
# one 3.3 GB zip, a third of them normal/spec/AO maps (build_data.py drops those by folder and name).
TRAIN_PACKAGES=(
  redeclipse-data openclipart-png supertuxkart-data stellarium-data nexuiz-textures
  widelands-data freedroidrpg-data gimp-help-en ufoai-textures ufoai-data trigger-rally-data
  naev-data kstars-data wesnoth-1.16-data opencv-doc endless-sky-data sweethome3d-furniture
  kgeography-data openarena-081-textures openarena-data openarena-088-data torcs-data
  freeorion-data hedgewars-data megaglest-data scorched3d-data fillets-ng-data flare-game
  extremetuxracer-data neverball-data colobot-common-textures marble-data lugaru-data
  tuxpaint-data python3-skimage oxygen-icon-theme 0ad-data
  # the second survey (build_data.py's SECOND_SURVEY; training only, so val/ stays as it was)
  berusky2-data blobwars-data boswars-data castle-game-engine-doc cataclysm-dda-data cube2-data
  flightgear-data-base flightgear-data-models freeciv-data freecol games-thumbnails krank
  libjxl-testdata lincity-ng-data mandelbulber2-data marsshooter-data mypaint-data-extras
  nexuiz-data pingus-data supertux-data unknown-horizons visp-images-data warmux-data
  warzone2100-data wesnoth-1.16-did wesnoth-1.16-dm wesnoth-1.16-dw wesnoth-1.16-ei
  wesnoth-1.16-httt wesnoth-1.16-l wesnoth-1.16-low wesnoth-1.16-nr wesnoth-1.16-sof
  wesnoth-1.16-sotbe wesnoth-1.16-thot wesnoth-1.16-trow wesnoth-1.16-tsg wesnoth-1.16-utbs
)

# Evaluation only: never train, tune or validate on these (the exclusion rule).
EVAL_PACKAGES=(
  gnome-backgrounds mate-backgrounds plasma-workspace-wallpapers ukui-wallpapers
  lomiri-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 sway-backgrounds
  desktop-base xfdesktop4-data tuxpaint-stamps-default
)

# Packages whose doc folder is a symlink to a dependency's: the dependency supplies the copyright.
DOC_PACKAGES=(gimp-help-common)

# Only image files, zip archives that may hold images, and copyright files are extracted.
MEMBERS=('*.png' '*.jpg' '*.jpeg' '*.tga' '*.bmp' '*.dds' '*.webp'
         '*.pk3' '*.wz' '*.zip' '*.sh3f' '*/copyright')

download() {  # download DEST_DIR PKG...: apt-get download the packages missing from DEST_DIR
  local dest=$1; shift
  local missing=() p
  mkdir -p "$dest"
  for p in "$@"; do
    compgen -G "$dest/${p}_*.deb" >/dev/null || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "downloading ${#missing[@]} packages into $dest: ${missing[*]}" >&2
  if ! (cd "$dest" && apt-get download "${missing[@]}"); then
    echo "apt-get download failed; running apt-get update and retrying" >&2
    apt-get update
    (cd "$dest" && apt-get download "${missing[@]}")
  fi
}

extract() {  # extract DEB_DIR OUT_DIR PKG...: image files of each .deb into OUT_DIR/<pkg>/
  local debs=$1 out=$2; shift 2
  local p deb
  for p in "$@"; do
    [ -e "$out/$p/.extracted" ] && continue
    deb=$(compgen -G "$debs/${p}_*.deb" | head -n 1)
    echo "extracting $deb" >&2
    rm -rf "$out/$p" && mkdir -p "$out/$p"
    # Same as `dpkg -x`, restricted to the members we use (saves GBs of sounds, models and maps).
    dpkg-deb --fsys-tarfile "$deb" \
      | tar -x -C "$out/$p" --wildcards --no-anchored --ignore-case "${MEMBERS[@]}" 2>/dev/null || true
    compgen -G "$out/$p/usr/share/doc/*/copyright" >/dev/null || copyright_from_depends "$deb" "$out/$p"
    dpkg-deb -f "$deb" Version > "$out/$p/.version"
    unzip_images "$out/$p"
    # the archives' images are unpacked; the archives themselves can be re-extracted from the .deb
    find "$out/$p" -path "$out/$p/unzipped" -prune -o -type f \( -iname '*.pk3' -o -iname '*.wz' \
      -o -iname '*.zip' -o -iname '*.sh3f' \) -print0 | xargs -0 rm -f
    touch "$out/$p/.extracted"
  done
}

copyright_from_depends() {  # copyright_from_depends DEB DIR: copyright files of DEB's dependencies
  local deb=$1 dir=$2 dep d
  for dep in $(dpkg-deb -f "$deb" Depends | tr ',|' '\n\n' | awk '{print $1}'); do
    d=$(compgen -G "$(dirname "$deb")/${dep}_*.deb" | head -n 1) || continue
    dpkg-deb --fsys-tarfile "$d" | tar -x -C "$dir" --wildcards --no-anchored '*/copyright' 2>/dev/null || true
  done
}

unzip_images() {  # unzip_images PKG_DIR: image members of zip archives into PKG_DIR/unzipped/
  "$PYTHON" - "$1" <<'EOF'
import pathlib, sys, zipfile

root = pathlib.Path(sys.argv[1])
image_suffixes = (".png", ".jpg", ".jpeg", ".tga", ".bmp", ".dds", ".webp")
archives = [a for a in root.rglob("*") if a.suffix.lower() in (".pk3", ".wz", ".zip", ".sh3f")
            and a.is_file() and "unzipped" not in a.relative_to(root).parts]
for archive in sorted(archives):
    target_root = root / "unzipped" / archive.relative_to(root).as_posix().replace("/", "__")
    try:
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                name = info.filename
                if info.is_dir() or not name.lower().endswith(image_suffixes):
                    continue
                parts = [p for p in pathlib.PurePosixPath(name).parts if p not in ("", ".", "..", "/")]
                target = target_root.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(info))
    except (zipfile.BadZipFile, OSError) as e:
        # the archive is kept and the package left unmarked, so the next run extracts it again
        sys.exit(f"could not unpack {archive}: {e}")
EOF
}

download "$DATA/debs" "${TRAIN_PACKAGES[@]}" "${DOC_PACKAGES[@]}"
download "$DATA/eval-debs" "${EVAL_PACKAGES[@]}"
extract "$DATA/debs" "$DATA/extract" "${TRAIN_PACKAGES[@]}"
extract "$DATA/eval-debs" "$DATA/eval-extract" "${EVAL_PACKAGES[@]}"
echo "done: $(du -sh "$DATA/extract" | cut -f1) in $DATA/extract, $(du -sh "$DATA/eval-extract" | cut -f1) in $DATA/eval-extract" >&2
