#!/usr/bin/env bash
# llama.cpp with CUDA for the GPU machine, from the llama.cpp that llama-cpp-python vendors (so the Python bindings
# and the C library agree on the ABI).
#
#   bench/gpu_build_llama.sh prepare SDIST_DIR DEST   # here: a trimmed source tree (~30 MB, fits the 64 MiB transfer)
#   bench/gpu_build_llama.sh build   SRC BUILD_DIR    # there: libllama + libggml-cuda + llama-batched-bench,
#                                                     #        llama-bench and llama-parallel
#
# SDIST_DIR is an unpacked llama_cpp_python-X.Y.Z sdist. `prepare` keeps what a CUDA build, the random GGUF writer
# and the Python bindings need (ggml with its CPU and CUDA backends, src, include, common, vendor, cmake, gguf-py, the
# Qwen2 vocabulary, two tools, one example) and drops the rest (75 MB of vocabularies, docs, tests, other GPU backends).
#
# `build` compiles once with plain CMake and the bindings load that library through LLAMA_CPP_LIB_PATH: one compile
# serves both llama-cpp-python and llama.cpp's own benchmarks. (`CMAKE_ARGS=-DGGML_CUDA=on pip install
# llama-cpp-python` gives the same library inside a wheel, at the price of a second compile.) It is idempotent: an
# existing build is reused, so a second call on a still-warm machine costs nothing.
set -euo pipefail

mode=${1:?usage: $0 prepare SDIST_DIR DEST | build SRC BUILD_DIR}

if [[ $mode == prepare ]]; then
    sdist=${2:?sdist dir}; dest=$(realpath -m "${3:?destination}")
    src=$sdist/vendor/llama.cpp
    rm -rf "$dest"; mkdir -p "$dest/llama.cpp/tools" "$dest/llama.cpp/models" "$dest/llama.cpp/ggml/src"
    cp -r "$sdist/llama_cpp" "$dest/llama_cpp"
    rm -rf "$dest/llama_cpp/server" "$dest/llama_cpp/__pycache__"
    (cd "$src" && cp -r CMakeLists.txt cmake common src include vendor gguf-py LICENSE "$dest/llama.cpp/")
    # the HF → GGUF converter, for training's export step
    (cd "$src" && cp convert_hf_to_gguf.py "$dest/llama.cpp/" && if [[ -d conversion ]]; then cp -r conversion "$dest/llama.cpp/"; fi)
    rm -rf "$dest/llama.cpp/gguf-py/tests"
    cp "$src/models/ggml-vocab-qwen2.gguf" "$dest/llama.cpp/models/"
    (cd "$src/ggml" && cp -r CMakeLists.txt cmake include "$dest/llama.cpp/ggml/")
    # ggml/src: its own files plus the CPU and CUDA backends (the others are only read when enabled)
    (cd "$src/ggml/src" && find . -maxdepth 1 -type f -exec cp {} "$dest/llama.cpp/ggml/src/" \; \
        && cp -r ggml-cpu ggml-cuda "$dest/llama.cpp/ggml/src/")
    cp -r "$src/tools/batched-bench" "$src/tools/llama-bench" "$dest/llama.cpp/tools/"
    cat > "$dest/llama.cpp/tools/CMakeLists.txt" <<'EOF'
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(batched-bench)
add_subdirectory(llama-bench)
EOF
    # llama-parallel: N simulated clients with continuous batching and sampling, the like-for-like native baseline
    mkdir -p "$dest/llama.cpp/examples"
    cp -r "$src/examples/parallel" "$dest/llama.cpp/examples/"
    cat > "$dest/llama.cpp/examples/CMakeLists.txt" <<'EOF'
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(parallel)
EOF
    mkdir -p "$dest/llama.cpp/pocs" && : > "$dest/llama.cpp/pocs/CMakeLists.txt"  # examples come with pocs
    du -sh "$dest"
    exit 0
fi

if [[ $mode == build ]]; then
    src=${2:?source dir}; build=${3:?build dir}
    if [[ -f $build/bin/libllama.so && -x $build/bin/llama-batched-bench && -x $build/bin/llama-parallel ]]; then
        echo "reusing $build"; exit 0
    fi
    t0=$(date +%s)
    cmake -S "$src/llama.cpp" -B "$build" -G Ninja \
        -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
        -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" -DGGML_NATIVE=ON \
        -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >"$build.configure.log" 2>&1 \
        || { tail -40 "$build.configure.log"; exit 1; }
    cmake --build "$build" -j "$(nproc)" --target llama llama-batched-bench llama-bench llama-parallel >"$build.build.log" 2>&1 \
        || { tail -60 "$build.build.log"; exit 1; }
    echo "built in $(( $(date +%s) - t0 ))s: $(ls "$build/bin" | tr '\n' ' ')"
    exit 0
fi

echo "unknown mode $mode" >&2; exit 2
