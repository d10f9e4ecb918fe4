#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the modules that decide robench's numbers.
#
#   tools/mutation.sh MODULE [SCRATCH [GLOB...]]
#
# MODULE is one of: evaluation sweeps tables losses runner (see docs/mutation.md);
# GLOBs (mutant names, e.g. "robench.runner.x_plan*") narrow the run to some functions.
# Runs outside CI, on one core, in a scratch copy of the last commit (SCRATCH, default
# a new temporary directory), never in the working tree. Prints every mutant that is not
# killed and the score, counting timeouts, untested and unchecked mutants as survivors.
# Needs `pip install mutmut` (3.x) in the active environment. MUTATION_CORE (default 0)
# is the core it runs on: two runs with different GLOBs can share a machine.
set -euo pipefail -o noglob  # the mutant-name globs are mutmut's, not the shell's

module=${1:?usage: tools/mutation.sh evaluation|sweeps|tables|losses|runner [SCRATCH]}
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
scratch=${2:-$(mktemp -d)}

# per module: the files to mutate, the functions (mutant-name globs) and the fast tests
case $module in
  evaluation)
    files="robench/evaluation.py"
    globs="robench.evaluation.*"
    tests="tests/test_numbers_recheck.py tests/test_evaluation.py tests/test_recheck_rows.py
           tests/test_recheck_frame.py tests/test_recheck_selection.py"
    canary="robench/evaluation.py:distances" ;;
  sweeps)
    files="robench/components.py robench/attack_runtime.py"
    globs="robench.components.xǁFixedBudgetAttackǁ* robench.components.xǁMinimalAttackǁ*
           robench.components.xǁAttackǁ_chunked* robench.components.xǁAttackǁcheck_inputs*
           robench.components.xǁAttackǁchunk_size* robench.attack_runtime.x_project*
           robench.attack_runtime.x_distance* robench.attack_runtime.x_succeeded*
           robench.attack_runtime.x_chunks* robench.attack_runtime.x_chunk_seed*"
    tests="tests/test_numbers_sweeps.py"
    canary="robench/attack_runtime.py:project" ;;
  tables)
    files="robench_plugins/metrics/_tables.py"
    globs="robench_plugins.metrics._tables.x_data_rows* robench_plugins.metrics._tables.x_bootstrap_interval*
           robench_plugins.metrics._tables.x__mean_rows* robench_plugins.metrics._tables.x_clean_*
           robench_plugins.metrics._tables.x_robust_* robench_plugins.metrics._tables.x_accuracy_from_samples*
           robench_plugins.metrics._tables.x_common_grid* robench_plugins.metrics._tables.x_normalised_area*
           robench_plugins.metrics._tables.x_sample_areas* robench_plugins.metrics._tables.x_auc*
           robench_plugins.metrics._tables.x_breakdown_point* robench_plugins.metrics._tables.x_minimal_distances*
           robench_plugins.metrics._tables.x_median_distance* robench_plugins.metrics._tables.x_attack_success*"
    tests="tests/test_numbers_metrics.py"
    canary="robench_plugins/metrics/_tables.py:normalised_area" ;;
  losses)
    files="robench_plugins/defenses/_weights.py robench_plugins/defenses/weight_decay.py"
    globs="robench_plugins.defenses._weights.* robench_plugins.defenses.weight_decay.*"
    tests="tests/test_numbers_losses.py"
    canary="robench_plugins/defenses/_weights.py:clip_matrix" ;;
  runner)
    files="robench/runner.py"
    globs="robench.runner.x_plan* robench.runner.xǁ_Keysǁ* robench.runner.x__file_digest*
           robench.runner.x_key_changes* robench.runner.x_version_change*
           robench.runner.xǁRunnerǁ_unit_record*"
    tests="tests/test_numbers_runner.py tests/test_integrity.py"
    canary="robench/runner.py:plan" ;;
  *) echo "unknown module $module" >&2; exit 2 ;;
esac
if [ $# -gt 2 ]; then shift 2; globs="$*"; fi

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ROBENCH_DISABLE_PLUGIN_AUTOLOAD=1

# the scratch copy; plugins/ is installed as robench_plugins (a package-dir mapping), so
# the copy holds it under that name: mutant names then match the imported module names
mkdir -p "$scratch"
git -C "$repo" archive HEAD | tar -x -C "$scratch"
rm -rf "$scratch/robench_plugins" "$scratch/mutants"
cp -r "$scratch/plugins" "$scratch/robench_plugins"
cd "$scratch"
cat > setup.cfg <<EOF
[mutmut]
source_paths =
    robench
    robench_plugins
only_mutate =
$(for f in $files; do echo "    $f"; done)
# the documentation some tests check against (the documented key material)
also_copy =
    docs
pytest_add_cli_args_test_selection =
$(for t in $tests; do echo "    $t"; done)
pytest_add_cli_args =
    -x
    -q
    -p
    no:cacheprovider
    -p
    no:randomly
# the wall-clock limit of a mutant is 15 * (its tests' time + this): generous, for
# machines whose cores are shared
timeout_constant = 10
# torch's thread pool does not survive a fork from a process that has used it: fork
# each mutant from a server that has only collected the tests
process_isolation = forkserver
EOF

# canary: a function of the module replaced by one that raises must fail the tests run
# from the copy, or the tests import some other copy of the code
path=${canary%%:*} function=${canary##*:}
cp "$path" "$path.orig"
printf '\n\ndef %s(*args, **kwargs):\n    raise AssertionError("mutation canary")\n' \
  "$function" >> "$path"
# shellcheck disable=SC2086
output=$(python -m pytest $tests -x -q -p no:cacheprovider 2>&1 || true)
if grep -q "mutation canary" <<<"$output"; then
  echo "canary killed: the tests import the copy in $scratch"
else
  echo "canary survived: the tests do not import the copy in $scratch" >&2; exit 1
fi
mv "$path.orig" "$path"

# shellcheck disable=SC2086
taskset -c "${MUTATION_CORE:-0}" mutmut run --max-children 1 $globs || true
# a second chance for mutants that timed out on a busy machine (a timeout still counts
# as a survivor after it)
mutmut results --all true | sed -n 's/^ *\(.*\): timeout$/\1/p' > timeouts.txt
if [ -s timeouts.txt ]; then
  # shellcheck disable=SC2046
  taskset -c "${MUTATION_CORE:-0}" mutmut run --max-children 1 $(cat timeouts.txt) || true
fi
mutmut results --all true > results.txt
python - "$globs" <<'EOF'
import fnmatch
import sys

globs = sys.argv[1].split()
status = {}
for line in open("results.txt"):
    name, _, state = line.strip().rpartition(": ")
    if any(fnmatch.fnmatch(name, g) for g in globs):
        status[name] = state
killed = sum(s == "killed" for s in status.values())
for name, state in sorted(status.items()):
    if state != "killed":
        print(f"{state}: {name}")
total = len(status)
print(f"score: {killed}/{total} killed = {100 * killed / max(total, 1):.1f}% "
      f"(timeouts, untested and unchecked mutants count as survivors)")
EOF
echo "inspect a mutant: cd $scratch && mutmut show NAME"
