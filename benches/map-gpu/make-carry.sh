#!/bin/bash
# Makes the two folders the GPU machine's calls carry (README.md here): a headless Chromium
# (Debian 12's chromium-headless-shell, cut to the files it loads, with its libraries and
# the glvnd EGL loader) split in two, and the map-only part of a built site.
#   bash benches/map-gpu/make-carry.sh SITE     (run in the repository root; SITE: a built
#                                                site, e.g. /tmp/r1m/site from the scale bench)
# Writes .gb1/ and .gb2/ (both ignored by git through .git/info/exclude). Installs nothing.
# XZ=9e (the default) takes ~5 minutes of one core; XZ=0 makes a quick, larger test build.
set -euo pipefail
SITE=$(realpath "${1:?usage: make-carry.sh SITE}")
[ -f "$SITE/map/map.json" ] || { echo "$SITE has no map/map.json: build a site with a model first" >&2; exit 2; }
D=$PWD; W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; cd "$W"; mkdir debs x st
for ignored in /.gb1/ /.gb2/; do grep -qxF "$ignored" "$D/.git/info/exclude" || echo "$ignored" >>"$D/.git/info/exclude"; done
LIBS="libasound2 libasyncns0 libatk1.0-0 libatspi2.0-0 libblkid1 libbrotli1 libbsd0 libcap2 libdav1d6
 libdbus-1-3 libdouble-conversion3 libdrm2 libexpat1 libffi8 libflac12 libfontconfig1 libfreetype6 libgbm1
 libgcrypt20 libglib2.0-0 libgpg-error0 libgraphite2-3 libharfbuzz-subset0 libharfbuzz0b libjpeg62-turbo
 liblcms2-2 liblz4-1 liblzma5 libmd0 libminizip1 libmount1 libmp3lame0 libmpg123-0 libnspr4 libnss3 libogg0
 libopenh264-7 libopenjp2-7 libopus0 libpcre2-8-0 libpng16-16 libpulse0 libselinux1 libsndfile1 libsystemd0
 libudev1 libvorbis0a libvorbisenc2 libwayland-server0 libx11-6 libx11-xcb1 libxau6 libxcb1 libxcomposite1
 libxdamage1 libxdmcp6 libxext6 libxfixes3 libxi6 libxkbcommon0 libxnvctrl0 libxrandr2 libxrender1 libzstd1
 zlib1g fontconfig-config fonts-dejavu-core libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2"
(cd debs && apt-get download -q chromium-headless-shell chromium-common $LIBS)
for f in debs/*.deb; do dpkg -x "$f" x; done
S=x/usr/lib/chromium; mkdir -p st/chrome/locales st/lib st/fonts
for f in chromium-headless-shell headless_command_resources.pak headless_lib_data.pak headless_lib_strings.pak \
  icudtl.dat v8_context_snapshot.bin snapshot_blob.bin libEGL.so libGLESv2.so libvulkan.so.1 \
  libvk_swiftshader.so vk_swiftshader_icd.json; do cp "$S/$f" st/chrome/; done
cp $S/locales/en-US.pak st/chrome/locales/
cp -a x/usr/lib/x86_64-linux-gnu/*.so* x/lib/x86_64-linux-gnu/*.so* x/usr/lib/x86_64-linux-gnu/pulseaudio/*.so st/lib/
F=x/usr/share/fonts/truetype/dejavu; cp $F/DejaVuSans.ttf $F/DejaVuSans-Bold.ttf $F/DejaVuSansMono.ttf st/fonts/
printf '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n  <dir prefix="relative">.</dir>\n  <cachedir>/tmp/fontconfig-cache</cachedir>\n</fontconfig>\n' >st/fonts/fonts.conf
rm -rf "$D/.gb1" "$D/.gb2"; mkdir -p "$D/.gb1" "$D/.gb2"
tar -C st -cf - --exclude=chrome/chromium-headless-shell chrome lib fonts | nice xz -T1 -${XZ:-9} >"$D/.gb1/rest.tar.xz"
nice xz -T1 -c --x86 --lzma2=preset=${XZ:-9e},dict=192MiB st/chrome/chromium-headless-shell >shell.xz
split -b 24M -a 2 shell.xz shell.xz.
mv shell.xz.aa "$D/.gb1/"; mv shell.xz.a[b-z] "$D/.gb2/"
# The map's own files only: the frame benchmark stays below the zoom where thumbnail atlases
# load, and never hovers (tile names) or searches (name chunks).
# static/ comes from this checkout, as the simsite binary built from it embeds it.
mkdir site && (cd "$SITE" && tar -chf - index.html map/map.json map/points.u16 map/colour-*.u16 map/overview.png) | tar -xf - -C site
cp -r "$D/static" site/ && tar -C site -cf "$D/.gb2/site.tar" .
du -sh "$D/.gb1" "$D/.gb2"; ls -l "$D/.gb1" "$D/.gb2"
