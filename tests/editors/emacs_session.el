;;; emacs_session.el --- Drive Emacs for tests/test_editors_emacs.py -*- lexical-binding: t -*-

;; Configures editors/emacs as its README says, opens a .txt file, types in it with keyboard
;; macros (so the command loop's hooks run as for a user) and records what happened as JSON
;; in $PROMPT_TEST_RESULT.  Assertions are the Python test's.

;;; Code:

(package-initialize)  ; Debian's elpa-eglot on Emacs 28
(require 'cl-lib)
(require 'json)
(add-to-list 'load-path (getenv "PROMPT_TEST_PLUGIN_DIR"))
(require 'prompt-autocomplete)

(setq prompt-autocomplete-command
      (json-parse-string (getenv "PROMPT_TEST_SERVER") :array-type 'list))
;; A busy 2-core machine must not cut decoding short: the test checks behaviour, not speed.
(setq prompt-autocomplete-settings '(:timeBudgetMs 20000))
(prompt-autocomplete-setup)

(defvar test-result (make-hash-table :test 'equal))

(defun test-record (key value)
  (puthash key value test-result)
  value)

(defun test-finish ()
  (with-temp-file (getenv "PROMPT_TEST_RESULT")
    (insert (json-encode test-result)))
  (kill-emacs 0))

(defun test-wait-until (what condition &optional timeout)
  "Let Emacs process timers and server output until CONDITION returns non-nil."
  (let ((deadline (+ (float-time) (or timeout 60)))
        value)
    (while (not (setq value (funcall condition)))
      (when (> (float-time) deadline)
        (error "Timed out waiting for %s" what))
      (accept-process-output nil 0.05))
    value))

(defun test-line ()
  (buffer-substring-no-properties (line-beginning-position) (line-end-position)))

(defun test-overlay-texts ()
  "The ghost overlays' texts in the buffer."
  (cl-loop for overlay in (overlays-in (point-min) (point-max))
           when (overlay-get overlay 'prompt-autocomplete)
           collect (substring-no-properties (overlay-get overlay 'after-string))))

(defun test-type (keys)
  (execute-kbd-macro (kbd keys)))

(condition-case failure
    (progn
      (find-file (getenv "PROMPT_TEST_FILE"))
      (test-record "major_mode" (symbol-name major-mode))
      (run-hooks 'post-command-hook) ; the command loop's turn: eglot-ensure connects
      (test-wait-until "eglot" #'eglot-current-server)
      (test-record "ghost_mode" prompt-autocomplete-ghost-mode)
      (test-record "language_id" (eglot--language-id (eglot-current-server)))
      (test-wait-until
       "the model"
       (lambda ()
         (equal "ready" (plist-get (jsonrpc-request (eglot-current-server)
                                                    :promptAutocomplete/status nil)
                                   :state)))
       180)

      (test-type "a SPC portrait SPC of SPC a SPC wom")
      ;; completion-at-point in a word: the words that finish it.
      (let* ((capf (eglot-completion-at-point))
             (typed (buffer-substring-no-properties (nth 0 capf) (nth 1 capf))))
        (test-record "completion_prefix" typed)
        (test-record "candidates"
                     (vconcat (mapcar #'substring-no-properties
                                      (all-completions typed (nth 2 capf))))))
      (delete-region (line-beginning-position) (line-end-position))
      ;; After a word the menu offers next phrases (in a word the corpus statistics offer
      ;; words). A phrase is picked as completion UIs (corfu, company) do it: the candidate
      ;; replaces the typed text, then the capf's exit function runs.
      (test-type "a SPC portrait SPC of SPC a SPC woman SPC")
      (let* ((capf (eglot-completion-at-point))
             (start (nth 0 capf))
             (typed (buffer-substring-no-properties start (nth 1 capf)))
             (candidates (all-completions typed (nth 2 capf)))
             (phrase (cl-find-if (lambda (text) (string-match-p " " text)) candidates)))
        (test-record "phrase_candidates" (vconcat (mapcar #'substring-no-properties candidates)))
        (test-record "phrase" (and phrase (substring-no-properties phrase)))
        (delete-region start (nth 1 capf))
        (goto-char start)
        (insert phrase)
        (funcall (plist-get (nthcdr 3 capf) :exit-function) phrase 'finished)
        (test-record "line_after_menu" (test-line)))
      (delete-region (line-beginning-position) (line-end-position))
      (test-type "a SPC portrait SPC of SPC a SPC wom")

      (let ((ghost (test-record "ghost" (test-wait-until "ghost text"
                                                         #'prompt-autocomplete-ghost-text))))
        (test-record "overlays" (vconcat (test-overlay-texts)))
        (test-record "line_with_ghost" (test-line))
        (test-type "M-n")
        (test-record "ghost_next"
                     (test-wait-until "another alternative"
                                      (lambda ()
                                        (let ((text (prompt-autocomplete-ghost-text)))
                                          (and text (not (equal text ghost)) text)))))
        (test-type "M-p")
        (test-record "ghost_back" (prompt-autocomplete-ghost-text)))

      (test-type "M-f")
      (test-record "line_after_word" (test-line))
      (test-record "ghost_after_word"
                   (test-wait-until "ghost text after a word" #'prompt-autocomplete-ghost-text))
      (test-type "TAB")
      (test-record "line_after_accept" (test-line))
      (test-type "C-a")
      (test-record "overlays_after_moving" (vconcat (test-overlay-texts)))

      (delete-region (line-beginning-position) (line-end-position))
      (insert "a portrait of a woman")
      (cl-letf (((symbol-function 'completing-read)
                 (lambda (_prompt choices &rest _)
                   (test-record "expansions" (vconcat choices))
                   (car choices))))
        (prompt-autocomplete-expand 2))
      (test-record "line_after_expand" (test-line))

      (find-file (expand-file-name "scene.prompt" (file-name-directory (getenv "PROMPT_TEST_FILE"))))
      (run-hooks 'post-command-hook)
      (test-record "prompt_file_mode" (symbol-name major-mode))
      (test-record "prompt_file_managed" (and (eglot-current-server) t))
      (test-finish))
  (error (test-record "error" (format "%S" failure))
         (test-finish)))

;;; emacs_session.el ends here
