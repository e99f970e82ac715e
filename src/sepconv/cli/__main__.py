from sepconv.cli import main

raise SystemExit(main())
