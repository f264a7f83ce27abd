"""Running experiments: the resumable suite runner, analyses of source prompts, statistics and reports,
`promptvec transfer` and library builds — above the suite layer (:mod:`promptvec.suites`) and the methods."""
