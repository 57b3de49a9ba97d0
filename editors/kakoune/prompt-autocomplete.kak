# prompt-ls in Kakoune through kakoune-lsp (v17 or newer, which reads servers from the
# lsp_servers option). Source this after loading kakoune-lsp:
#
#   eval %sh{kak-lsp}
#   source /path/to/editors/kakoune/prompt-autocomplete.kak
#   lsp-enable
#
# kakoune-lsp sends the filetype as languageId. Kakoune gives *.txt and *.prompt none, so they
# get "text" and "prompt", both of which prompt-ls serves (as it does "markdown").

hook -group prompt-autocomplete global BufCreate .*\.txt %{
    set-option buffer filetype text
}
hook -group prompt-autocomplete global BufCreate .*\.prompt %{
    set-option buffer filetype prompt
}

# This replaces kakoune-lsp's default markdown server (marksman) for markdown buffers.
hook -group prompt-autocomplete global BufSetOption filetype=(?:text|prompt|markdown) %{
    set-option buffer lsp_servers %{
        [prompt-ls]
        root_globs = [".git", ".hg"]
        settings_section = "promptAutocomplete"
        [prompt-ls.settings.promptAutocomplete]
        timeBudgetMs = 400
    }
}
