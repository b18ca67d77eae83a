#!/bin/sh
# stand-in for get.k3s.io in graph snapshots
