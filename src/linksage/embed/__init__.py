"""The embed stage: batch inference of changed pages into the versioned store."""
