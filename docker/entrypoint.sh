#!/bin/sh
# The image's entrypoint: create what is missing (hutch init), then exec hutch serve.
#
#   docker run IMAGE [--config FILE] [--port P] [--workers N]   init, then serve, same --config
#   docker run IMAGE token --sub alice                          any other hutch command, as is
#
# init gets the --config that serve gets, so both use the same database and keys (before,
# `docker run IMAGE --config X` initialised the embedded default and served X). With no
# configuration at all (no --config, no $HUTCH_CONFIG, no ./hutch.config) serve prepares
# the embedded default itself, and refuses to start empty when an earlier run's keys are
# there but its database is gone; init would have created a new, empty one.
set -eu

case "${1:-}" in
  init|keys|db|token|-h|--help|--version) exec hutch "$@" ;;
  serve) shift ;;
esac

config=""
previous=""
for argument in "$@"; do
  if [ "$previous" = "--config" ]; then config=$argument; fi
  case "$argument" in --config=*) config=${argument#--config=} ;; esac
  previous=$argument
done

if [ -n "$config" ]; then
  hutch init --config "$config"
elif [ -n "${HUTCH_CONFIG:-}" ] || [ -e hutch.config ]; then
  hutch init
fi
exec hutch serve "$@"
