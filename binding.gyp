{
  "targets": [
    {
      "target_name": "qcaps_native",
      "sources": [
        "native/addon.cc",
        "native/gemm.cc",
        "native/gemm-builtin.cc",
        "native/conv.cc",
        "native/fixedconv.cc",
        "native/fixedwino.cc",
        "native/fixedkernels.cc",
        "native/smallconv.cc",
        "native/routing.cc",
        "native/quantize.cc",
        "native/fracerrors.cc",
        "native/parallel.cc",
        "native/winograd.cc",
        "native/fftconv.cc",
        "native/elementwise.cc",
        "native/expf.cc",
        "native/isa.cc",
        "native/settings.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-O3", "-pthread", "-std=c++17", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast"],
      "conditions": [
        ["OS=='mac'", {
          "defines": ["QC_CBLAS_ACCELERATE=1"],
          "libraries": ["-framework Accelerate"],
          "xcode_settings": {"OTHER_CPLUSPLUSFLAGS": ["-O3", "-std=c++17"]}
        }],
        ["OS=='linux'", {
          "cflags_cc": ["<!@(node scripts/find-blas.mjs cflags)"],
          "libraries": ["<!@(node scripts/find-blas.mjs libs)"]
        }]
      ]
    }
  ]
}
