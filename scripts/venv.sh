# Python venv helpers, sourced by scripts/test and tests/interop/run_py.sh (bash).
#
#   pick_python                 print the interpreter to use: $PYTHON, python3.11 or python3
#   venv_install VENV REQS...   make (or reuse) a working venv at VENV and pip install -r each
#                               requirements file into it

pick_python() {
    local p
    for p in "${PYTHON:-}" python3.11 python3; do
        if [[ -n "$p" ]] && command -v "$p" >/dev/null 2>&1; then
            echo "$p"
            return
        fi
    done
    echo "no python3 found" >&2
    return 1
}

venv_install() {
    local venv=$1 py req
    local -a pip
    shift
    py=$(pick_python)
    # Reuse a working venv; otherwise make it anew. "Working" includes being a venv: a
    # python whose pyvenv.cfg is gone (a venv half deleted) runs as the base interpreter,
    # and pip would install into the host's site-packages.
    if ! "$venv/bin/python" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' >/dev/null 2>&1; then
        rm -rf "$venv"
        if ! "$py" -m venv "$venv"; then
            # Debian without python3-venv has no ensurepip: make the venv without pip and
            # drive the host's pip into it (pip >= 22.3 has --python).
            echo "(venv without ensurepip: using the host pip with --python)"
            rm -rf "$venv"
            "$py" -m venv --without-pip "$venv"
        fi
    fi
    if "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        pip=("$venv/bin/python" -m pip)
    else
        pip=("$py" -m pip --python "$venv/bin/python")
    fi
    for req in "$@"; do
        "${pip[@]}" install --disable-pip-version-check --quiet -r "$req"
    done
}
