# Torch kernel settings that make the CPU do its sums as a CPU without AVX-512 would (sourced by
# .ci/run and scripts/install_check.sh). ATEN_CPU_CAPABILITY picks ATen's vectorised kernels
# (avx512 / avx2 / default = no explicit vectorisation); ONEDNN_MAX_CPU_ISA caps oneDNN's (the
# convolutions). Each entry is a list of NAME=VALUE for `env`.
FORCED_KERNELS=(
    "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2"
    "ATEN_CPU_CAPABILITY=default"
)
