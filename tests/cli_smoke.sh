#!/usr/bin/env bash
# Placeholder replaced below.
"$1" version
