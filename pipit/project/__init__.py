"""Projects as code: a folder of datasources and pipes (Tinybird's datafiles or Pipit's
native protos + SQL), built into the one artefact every process loads, deployed to a
running suite without a restart. One module per job; see each module's docstring."""
