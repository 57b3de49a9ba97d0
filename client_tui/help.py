"""Help texts, kept free of heavy imports so that --help and usage errors answer at once."""

KEY_HELP = """\
key bindings:
  (typing)        ghost text (grey) appears after a short pause
  Tab, Right      accept the whole ghost text (Tab moves through the menu when no ghost is shown)
  Ctrl-Right      accept the next word of the ghost text
  Alt-] / Alt-[   next / previous alternative ghost text
  Ctrl-Space      open the completion menu at the cursor (it also opens by itself while you
                  type a word and the server has completions for it)
  Up / Down       move through the menu (Down selects the first item); history when no menu
  F2, Alt-x       expand: pick one of several full prompts from a menu (Up/Down, Enter)
  Escape          close the menu, restoring the text it replaced
  Enter           print the prompt on stdout and keep it in history (with a menu item
                  selected: keep the item and close the menu)
  Ctrl-R          search history
  Ctrl-C          clear the line
  Ctrl-D          quit
  Moving the cursor, or typing something other than the ghost's next characters, drops it."""

BATCH_HELP = """\
without a terminal:
  prompt-repl --expand "woman portrait" -n 4
      prints up to 4 expansions (what the server finds within its time budget), one per line.
  printf 'woman portrait\\ncastle on a hill\\n' | prompt-repl -n 3
      reads one idea per line (blank lines are skipped) and prints each idea's expansions,
      one per line, with one blank line between ideas, in input order.
  Exit status: 0 on success, 1 when the server fails or gives no expansion, 2 on bad options."""
