#!/bin/bash
# GPU machine, call 1 of 2 (carry .gb1): parks the browser's first part outside the working
# tree, unpacks its libraries, and prints what the machine offers (README.md here).
G=${G:-/root/gb}; mkdir -p $G
cp .gb1/shell.xz.aa $G/ && tar -xJf .gb1/rest.tar.xz -C $G || exit 1
head -2 /etc/os-release; ldd --version | head -1; nvidia-smi -L
N=/usr/local/nvidia
ls $N/share/glvnd/egl_vendor.d $N/share/vulkan/icd.d /usr/share/glvnd/egl_vendor.d 2>&1
ls $N/lib64 $N/lib 2>/dev/null | grep -E 'libEGL_nvidia|libGLESv2_nvidia|libnvidia-eglcore|libnvidia-glcore' | sort -u
for f in $G/lib/*.so*; do LD_LIBRARY_PATH=$G/lib ldd $f 2>/dev/null | grep 'not found'; done | sort -u
echo "part 1 parked: $(ls -l $G/shell.xz.aa)"
