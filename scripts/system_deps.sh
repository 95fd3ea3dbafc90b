#!/usr/bin/env bash
# The system tools the README's examples and the test suites call, installed with apt-get when
# missing (run by `make test`, `make test-slow`, `make image` and .ci/run, never by `make run`; a no-op
# once they are there):
#   curl     every README and docs/ example (tests/test_docs.py runs them)
#   strace   the offline proof in `make test-slow` (scripts/offline_check.sh, tests/test_bundle.py)
#   ip       the same proof brings loopback up in its network namespace (iproute2)
#   chromium, chromedriver   the playground page test in a headless browser (tests/api/test_playground.py)
#   debootstrap   the minbase root filesystem with no Python (scripts/minbase.sh): the no-Python
#                 proof and the container image's base
#   podman, runc  the container image (scripts/image.sh, `make image`, tests/deploy/test_image.py)
#   qemu-x86_64   other CPUs emulated: the start-up fidelity gate on an x86 without VNNI
#                 (tests/runtime/test_emulated_cpus.py, bench/cpu_paths.py; qemu-user)
#   qemu-aarch64-static   the arm64 bundle built and run in arm64 root filesystems through
#                 binfmt_misc (scripts/bundle_arm64.sh, scripts/arm64_check.sh; qemu-user-static)
#   mosquitto     the MQTT broker the stream tests start on a loopback port (tests/streams)
#   wrk           the bench harness's load generator (bench/load.py, tests/bench/test_harness.py)
# Without root or apt-get it only names what is missing and exits 0: the tests that need a missing
# tool then skip in a plain pytest run and fail under EDGE_MM_REQUIRE_FIXTURES=1 (`make test`, CI).
set -euo pipefail
missing=()
for pair in curl:curl strace:strace ip:iproute2 chromium:chromium chromedriver:chromium-driver \
  debootstrap:debootstrap podman:podman runc:runc qemu-x86_64:qemu-user qemu-aarch64-static:qemu-user-static wrk:wrk mosquitto:mosquitto; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
# GStreamer's RTSP server driven by the system Python (tests/streams/rtsp_server.py): qtdemux and
# rtph264pay (-good), h264parse (-bad); libraries, so the check is an import, not a command
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" >/dev/null 2>&1 \
  || missing+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system_deps: missing ${missing[*]}: install them (e.g. sudo apt-get install ${missing[*]})" >&2
  exit 0
fi
echo "system_deps: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }
install || { apt-get update -q >/dev/null 2>&1 && install; } \
  || echo "system_deps: apt-get could not install ${missing[*]}: the tests that need them will fail" >&2
