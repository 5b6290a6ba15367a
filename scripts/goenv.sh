# Sourced by the scripts: resolve github.com/polyswarm/psengine from this
# clone (not the network), so that natsq's requirement on the core, a
# pseudo-version naming a commit of this repository, can be checked and
# built offline, exactly as a user outside the repository would build it.
root=$(git -C "$(dirname "${BASH_SOURCE[0]}")/.." rev-parse --show-toplevel)
export GOPRIVATE="${GOPRIVATE:+$GOPRIVATE,}github.com/polyswarm/psengine"
export GIT_CONFIG_COUNT=1
export GIT_CONFIG_KEY_0="url.$root.insteadOf"
export GIT_CONFIG_VALUE_0="https://github.com/polyswarm/psengine"
