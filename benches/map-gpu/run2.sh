#!/bin/bash
# GPU machine, call 2 of 2 (carry .gb2), straight after call 1: puts the browser together,
# serves the carried map on loopback, and times its frames (frames.js) with the GPU through
# EGL, then through Vulkan, then in software (SwiftShader) for comparison. Results go to $OUT.
G=${G:-/root/gb}; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
H=$(dirname "$(realpath "$0")")
[ -f $G/shell.xz.aa ] || { echo "part 1 is missing: the machine went cold; make call 1 again, then this one"; exit 3; }
cat $G/shell.xz.aa .gb2/shell.xz.a[b-z] | xz -dc >$G/chrome/chromium-headless-shell || exit 1
chmod +x $G/chrome/chromium-headless-shell
mkdir -p $G/site && tar -xf .gb2/site.tar -C $G/site || exit 1
N=/usr/local/nvidia
# The browser's own environment, kept away from python3 (whose libraries it could shadow).
X=(env LD_LIBRARY_PATH=$G/lib:$N/lib64:$N/lib FONTCONFIG_FILE=$G/fonts/fonts.conf)
E=$N/share/glvnd/egl_vendor.d/10_nvidia.json; [ -f $E ] && X+=(__EGL_VENDOR_LIBRARY_FILENAMES=$E)
V=$N/share/vulkan/icd.d/nvidia_icd.json; [ -f $V ] && X+=(VK_DRIVER_FILES=$V VK_ICD_FILENAMES=$V)
"${X[@]}" ldd $G/chrome/chromium-headless-shell | grep 'not found'
python3 -m http.server 8000 --bind 127.0.0.1 -d $G/site >/dev/null 2>&1 &
SERVER=$!
sleep 0.5
measure() { # label, then the browser's GL flags
  L=$1; shift
  "${X[@]}" $G/chrome/chromium-headless-shell --no-sandbox --disable-dev-shm-usage --ignore-gpu-blocklist \
    --window-size=1200,800 --enable-logging=stderr --user-data-dir=/tmp/ud-$L \
    --remote-debugging-port=9222 "$@" about:blank 2>$OUT/chrome-$L.log &
  P=$!
  echo "== $L: $*"
  timeout ${T:-240} python3 $H/cdp.py 9222 eval http://127.0.0.1:8000/ $H/frames.js | tee $OUT/frames-$L.json
  timeout 20 python3 $H/cdp.py 9222 gpu | grep -E '"(glRenderer|webgl2?)"'
  kill $P; wait $P 2>/dev/null
  grep -iE 'ERROR:.*(gl|egl|angle|vulkan|gpu)' $OUT/chrome-$L.log | cut -c1-200 | head -4
}
measure egl --use-angle=gl-egl
measure vulkan --use-angle=vulkan --enable-features=Vulkan --disable-vulkan-surface
measure swiftshader --use-angle=swiftshader --enable-unsafe-swiftshader
kill $SERVER
