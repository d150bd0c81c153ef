import sys

from mis_sync.app import main

sys.exit(main(sys.argv[1:]))
