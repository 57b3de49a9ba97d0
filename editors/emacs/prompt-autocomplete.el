;;; prompt-autocomplete.el --- Prompt autocompletion (prompt-ls) through eglot, with ghost text -*- lexical-binding: t -*-

;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1") (eglot "1.9"))
;; Keywords: convenience, completion

;;; Commentary:

;; Connects `prompt-ls' to text, markdown and prompt buffers through eglot (built into Emacs
;; 29+, the `eglot' package before), so `completion-at-point' offers its completions, and adds
;; `prompt-autocomplete-ghost-mode': eglot has no UI for textDocument/inlineCompletion, so this
;; minor mode asks for it a moment after each edit, shows the answer after point as an overlay,
;; and accepts it with TAB (all) or M-f (one word); M-n / M-p cycle alternatives.
;; `prompt-autocomplete-expand' offers full expansions of the current line.
;;
;;   (add-to-list 'load-path "/path/to/editors/emacs")
;;   (require 'prompt-autocomplete)
;;   (prompt-autocomplete-setup)

;;; Code:

(require 'cl-lib)
(require 'eglot)
(require 'jsonrpc)
(require 'subr-x)

(defgroup prompt-autocomplete nil
  "Autocompletion for text-to-image prompts with prompt-ls."
  :group 'convenience
  :prefix "prompt-autocomplete-")

(defcustom prompt-autocomplete-command '("prompt-ls")
  "The server's command line."
  :type '(repeat string))

(defcustom prompt-autocomplete-modes '(text-mode markdown-mode prompt-mode)
  "Major modes whose buffers get prompt-ls (not modes derived from them).
Remove `markdown-mode' to keep another markdown server (one server per buffer)."
  :type '(repeat symbol))

(defcustom prompt-autocomplete-settings nil
  "The server's settings as a plist, e.g. (:timeBudgetMs 400 :maxItems 10).
Sent as initializationOptions; see the project's README for the keys."
  :type 'plist)

(defcustom prompt-autocomplete-delay 0.1
  "Seconds after an edit before ghost text is asked for."
  :type 'number)

(defface prompt-autocomplete-ghost '((t :inherit shadow))
  "Face of the ghost text.")

(define-derived-mode prompt-mode text-mode "Prompt"
  "Major mode for text-to-image prompt files (*.prompt).")

;;;###autoload
(add-to-list 'auto-mode-alist '("\\.prompt\\'" . prompt-mode))

(defun prompt-autocomplete--contact (_interactive)
  "The eglot contact for prompt-ls, read when a server starts.
So `prompt-autocomplete-settings' apply from the next start."
  `(,@prompt-autocomplete-command
    :initializationOptions ,(or prompt-autocomplete-settings (make-hash-table))))

(defun prompt-autocomplete--server-entry ()
  "The `eglot-server-programs' entry: one server for all the modes.
Each mode sends its own language id."
  (cons (mapcar (lambda (mode)
                  (list mode :language-id (string-remove-suffix "-mode" (symbol-name mode))))
                prompt-autocomplete-modes)
        #'prompt-autocomplete--contact))

(defun prompt-autocomplete--maybe-start ()
  "Start eglot and ghost text in buffers of exactly `prompt-autocomplete-modes'."
  (when (memq major-mode prompt-autocomplete-modes)
    (eglot-ensure)
    (prompt-autocomplete-ghost-mode 1)))

;;;###autoload
(defun prompt-autocomplete-setup ()
  "Use prompt-ls, with ghost text, in buffers of `prompt-autocomplete-modes'."
  (setq eglot-server-programs
        (cons (prompt-autocomplete--server-entry)
              (cl-remove #'prompt-autocomplete--contact eglot-server-programs :key #'cdr)))
  (dolist (mode prompt-autocomplete-modes)
    (add-hook (intern (format "%s-hook" mode)) #'prompt-autocomplete--maybe-start)))

;;; Ghost text

(defvar-local prompt-autocomplete--overlay nil "The overlay showing the ghost text.")
(defvar-local prompt-autocomplete--texts nil "Ghost texts to insert at point, best first.")
(defvar-local prompt-autocomplete--index 0 "Which of `prompt-autocomplete--texts' is shown.")
(defvar-local prompt-autocomplete--invoked nil "Non-nil once alternatives were asked for.")
(defvar-local prompt-autocomplete--timer nil "The pending request's timer.")
(defvar-local prompt-autocomplete--last-tick 0 "The buffer's tick after the last command.")

(defun prompt-autocomplete-ghost-text ()
  "The ghost text shown in this buffer, or nil."
  (and prompt-autocomplete--texts (nth prompt-autocomplete--index prompt-autocomplete--texts)))

(defun prompt-autocomplete-clear ()
  "Remove the ghost text."
  (when prompt-autocomplete--overlay
    (delete-overlay prompt-autocomplete--overlay))
  (setq prompt-autocomplete--overlay nil
        prompt-autocomplete--texts nil
        prompt-autocomplete--index 0
        prompt-autocomplete--invoked nil))

(defun prompt-autocomplete--draw ()
  (when prompt-autocomplete--overlay
    (delete-overlay prompt-autocomplete--overlay))
  (let ((text (copy-sequence (prompt-autocomplete-ghost-text))))
    (add-face-text-property 0 (length text) 'prompt-autocomplete-ghost nil text)
    (put-text-property 0 1 'cursor t text)  ; the cursor stays before the ghost text
    (setq prompt-autocomplete--overlay (make-overlay (point) (point) nil nil t))
    (overlay-put prompt-autocomplete--overlay 'after-string text)
    (overlay-put prompt-autocomplete--overlay 'prompt-autocomplete t)))

(defun prompt-autocomplete--suffixes (items)
  "What each inline completion item in ITEMS adds at point.
Only items whose range ends at point and that keep the typed text count."
  (let (texts)
    (dolist (item items)
      (let* ((insert (plist-get item :insertText))
             (insert (if (stringp insert) insert (plist-get insert :value)))
             (range (plist-get item :range))
             (region (if range (eglot--range-region range) (cons (point) (point))))
             (typed (and (stringp insert) (<= (car region) (point)) (= (cdr region) (point))
                         (buffer-substring-no-properties (car region) (point)))))
        (when (and typed (string-prefix-p typed insert))
          (let ((text (car (split-string (substring insert (length typed)) "\n"))))
            (unless (or (string-empty-p text) (member text texts))
              (push text texts))))))
    (nreverse texts)))

(defun prompt-autocomplete--ask (trigger-kind on-texts)
  "Ask for inline completions at point with TRIGGER-KIND.
ON-TEXTS gets the ghost texts if the buffer and point are unchanged by then."
  (when-let ((server (eglot-current-server)))
    (eglot--signal-textDocument/didChange)
    (let ((buffer (current-buffer))
          (tick (buffer-chars-modified-tick))
          (position (point)))
      (jsonrpc-async-request
       server :textDocument/inlineCompletion
       (append (eglot--TextDocumentPositionParams)
               `(:context (:triggerKind ,trigger-kind)))
       :success-fn
       (lambda (result)
         (when (buffer-live-p buffer)
           (with-current-buffer buffer
             (when (and (= tick (buffer-chars-modified-tick)) (= position (point))
                        (eq buffer (window-buffer (selected-window))))
               (let ((items (if (vectorp result) result (plist-get result :items))))
                 (funcall on-texts (prompt-autocomplete--suffixes (append items nil))))))))
       :error-fn #'ignore
       :timeout-fn #'ignore))))

(defun prompt-autocomplete--show (texts invoked)
  (prompt-autocomplete-clear)
  (when texts
    (setq prompt-autocomplete--texts texts
          prompt-autocomplete--invoked invoked)
    (prompt-autocomplete--draw)))

(defun prompt-autocomplete-request ()
  "Ask for ghost text at point now."
  (interactive)
  (prompt-autocomplete--ask 2 (lambda (texts) (prompt-autocomplete--show texts nil))))

(defun prompt-autocomplete--schedule ()
  (when (timerp prompt-autocomplete--timer)
    (cancel-timer prompt-autocomplete--timer))
  (let ((buffer (current-buffer)))
    (setq prompt-autocomplete--timer
          (run-at-time prompt-autocomplete-delay nil
                       (lambda ()
                         (when (and (buffer-live-p buffer)
                                    (eq buffer (window-buffer (selected-window))))
                           (with-current-buffer buffer
                             (prompt-autocomplete-request))))))))

(defconst prompt-autocomplete--own-commands
  '(prompt-autocomplete-accept prompt-autocomplete-accept-word
    prompt-autocomplete-next prompt-autocomplete-previous)
  "Commands that use the ghost text rather than dismiss it.")

(defun prompt-autocomplete--pre-command ()
  (unless (memq this-command prompt-autocomplete--own-commands)
    (prompt-autocomplete-clear)))

(defun prompt-autocomplete--post-command ()
  "After an edit (or an accepted word), ask for ghost text after a short pause."
  (when (and (not (memq this-command '(prompt-autocomplete-next prompt-autocomplete-previous)))
             (not (prompt-autocomplete-ghost-text))
             (/= (buffer-chars-modified-tick) prompt-autocomplete--last-tick))
    (prompt-autocomplete--schedule))
  (setq prompt-autocomplete--last-tick (buffer-chars-modified-tick)))

(defun prompt-autocomplete-first-word (text)
  "The part of TEXT that one word-accept takes.
Spaces, then a word or a run of punctuation."
  (if (string-match "\\`[[:space:]]*\\(?:[^[:space:][:punct:]]+\\|[[:punct:]]+\\)" text)
      (match-string 0 text)
    text))

(defun prompt-autocomplete-accept (&optional word)
  "Insert the ghost text, or only its first word when WORD is non-nil."
  (interactive)
  (when-let ((text (prompt-autocomplete-ghost-text)))
    (let* ((taken (if word (prompt-autocomplete-first-word text) text))
           (rest (substring text (length taken))))
      (prompt-autocomplete-clear)
      (insert taken)
      (unless (string-empty-p rest) ; the rest stays shown without asking the server
        (prompt-autocomplete--show (list rest) nil)))))

(defun prompt-autocomplete-accept-word ()
  "Insert the first word of the ghost text."
  (interactive)
  (prompt-autocomplete-accept t))

(defun prompt-autocomplete--cycle (step)
  (if (or prompt-autocomplete--invoked (cdr prompt-autocomplete--texts))
      (progn
        (setq prompt-autocomplete--index
              (mod (+ prompt-autocomplete--index step) (length prompt-autocomplete--texts)))
        (prompt-autocomplete--draw))
    (let ((current (prompt-autocomplete-ghost-text)))
      (prompt-autocomplete--ask
       1 (lambda (texts)
           (let* ((texts (if (and current (not (member current texts))) (cons current texts) texts))
                  (at (or (cl-position current texts :test #'equal) -1)))
             (prompt-autocomplete--show texts t)
             (when texts
               (setq prompt-autocomplete--index (mod (+ at step) (length texts)))
               (prompt-autocomplete--draw))))))))

(defun prompt-autocomplete-next ()
  "Show the next alternative ghost text.
The first time, ask the server for alternatives."
  (interactive)
  (prompt-autocomplete--cycle 1))

(defun prompt-autocomplete-previous ()
  "Show the previous alternative ghost text."
  (interactive)
  (prompt-autocomplete--cycle -1))

(defun prompt-autocomplete--when-shown (command)
  "COMMAND while ghost text is shown, else nil.
So without ghost text the key keeps its usual binding."
  (and (prompt-autocomplete-ghost-text) command))

(defvar prompt-autocomplete-ghost-mode-map
  (let ((map (make-sparse-keymap)))
    (dolist (binding '(("TAB" . prompt-autocomplete-accept)
                       ("<tab>" . prompt-autocomplete-accept)
                       ("M-f" . prompt-autocomplete-accept-word)
                       ("C-<right>" . prompt-autocomplete-accept-word)
                       ("M-n" . prompt-autocomplete-next)
                       ("M-p" . prompt-autocomplete-previous)))
      (define-key map (kbd (car binding))
        `(menu-item "" ,(cdr binding) :filter prompt-autocomplete--when-shown)))
    map)
  "Keys active while ghost text is shown.")

;;;###autoload
(define-minor-mode prompt-autocomplete-ghost-mode
  "Show prompt-ls's inline completions after point as ghost text."
  :lighter " Ghost"
  (if prompt-autocomplete-ghost-mode
      (progn
        (add-hook 'pre-command-hook #'prompt-autocomplete--pre-command nil t)
        (add-hook 'post-command-hook #'prompt-autocomplete--post-command nil t))
    (remove-hook 'pre-command-hook #'prompt-autocomplete--pre-command t)
    (remove-hook 'post-command-hook #'prompt-autocomplete--post-command t)
    (prompt-autocomplete-clear)))

;;; Expansion

(defun prompt-autocomplete-expand (&optional count)
  "Replace the current line with one of COUNT full expansions from prompt-ls.
COUNT defaults to 4."
  (interactive "P")
  (let* ((line (buffer-substring-no-properties (line-beginning-position) (line-end-position)))
         (count (if count (prefix-numeric-value count) 4))
         (expansions (append (jsonrpc-request (eglot--current-server-or-lose)
                                              :workspace/executeCommand
                                              `(:command "promptAutocomplete.expand"
                                                :arguments ,(vector line count)))
                             nil)))
    (if (null expansions)
        (message "prompt-autocomplete: no expansion (is the model still loading?)")
      (let ((choice (completing-read "Expansion: " expansions nil t nil nil (car expansions))))
        (delete-region (line-beginning-position) (line-end-position))
        (insert choice)))))

(provide 'prompt-autocomplete)
;;; prompt-autocomplete.el ends here
