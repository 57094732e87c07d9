#!/usr/bin/env bash
# Installs what Vouch needs to build and run on Debian or Ubuntu: a C toolchain, libclang
# (bindgen, for the webcam crate), the X11/Wayland/OpenGL libraries the window opens with,
# fontconfig and the Noto CJK fonts (names in Chinese, Japanese or Korean; egui's own fonts
# draw Latin, Greek and Cyrillic only),
# Xvfb for headless GUI runs, PostgreSQL (the tests run the store on a throwaway server;
# a single kiosk never needs it), and Rust (rustup) when cargo is missing. Safe to run again.
set -euo pipefail

packages=(
  build-essential pkg-config curl ca-certificates
  libclang-dev
  libx11-6 libxcursor1 libxrandr2 libxi6 libxkbcommon-x11-0 libx11-xcb1 libwayland-client0
  libgl1 libegl1 libgl1-mesa-dri
  libfontconfig1 fonts-noto-cjk
  xvfb
  postgresql
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  echo "Rust installed: run 'source \$HOME/.cargo/env' or open a new shell."
fi
