#!/bin/sh
echo "$GREETING, $TARGET! ($(cat /app/build-info))"
