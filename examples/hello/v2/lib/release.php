<?php
const RELEASE = 'v2';
