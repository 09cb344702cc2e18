#!/usr/bin/env bash
# Scalene wants its program's arguments after "---":
#   scalene_run.sh OUTFILE script.py args...  ->  scalene run -o OUTFILE script.py --- args...
out=$1
script=$2
shift 2
exec "${PYTHON:-python}" -m scalene run -o "$out" "$script" --- "$@"
