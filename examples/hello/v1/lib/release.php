<?php
const RELEASE = 'v1';
