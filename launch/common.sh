# Helpers the launch scripts share; sourced, never run. The sourcing script sets
# SCRIPT_NAME (for messages) and REPO (the checkout) first.

# Stops with a one-line error naming the script.
die() { echo "${SCRIPT_NAME:-launch}: error: $*" >&2; exit 2; }

# Prints a command as one line that a shell reads back as the same words.
show() {
  local arg line="" q="'\\''"
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      line+="$arg "
    else
      line+="'${arg//\'/$q}' "
    fi
  done
  echo "${line% }"
}

# The interpreter: $PYTHON if set, else the checkout's .venv, else python3.
default_python() {
  if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"
  elif [[ -x "$REPO/.venv/bin/python" ]]; then echo "$REPO/.venv/bin/python"
  else echo python3
  fi
}
