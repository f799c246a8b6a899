"""One module per `ceod` command (or family of commands). Each owns its arguments and its
handler: `register(sub)` adds its parser(s) to the CLI's subparsers and sets `handler`. Modules
import their stage lazily inside the handler, so building the parser (and `ceod inspect`) never
loads torch. Shared flags and parsing helpers live in `common`."""

from ceod.pipeline.commands import (baseline, bench, calibrate, data, demo, evaluate, experiment, export, inspect, predict_aoi,
                                    segmenter, suggest, synth, train_classifier, watch)

# in the order `ceod --help` lists them: the flow, then the tools
MODULES = (synth, data, segmenter, predict_aoi, suggest, train_classifier, evaluate, export, calibrate, inspect, baseline, watch, bench,
           demo, experiment)
